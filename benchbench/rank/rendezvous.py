"""The rank side of starting a job: who this process is, and joining the job's process group.

* :func:`rank_env` — rank, world size and local rank from the launcher's environment (Slurm's
  variables for ranks started by our ``srun``, torchrun's otherwise, else one process);
* :func:`rank_env_from_slurm` — RANK / WORLD_SIZE / LOCAL_RANK from SLURM_PROCID / SLURM_NTASKS /
  SLURM_LOCALID; MASTER_ADDR the first host of SLURM_STEP_NODELIST (:func:`first_host`, parsed here,
  so ``scontrol`` need not be installed); MASTER_PORT from BENCHBENCH_MASTER_PORT, a port the parent
  (``benchbench run``, on the allocation's first node: rank 0's host) found free by binding port 0
  (:func:`benchbench.launch.command.free_port`; relaunched on a fresh one if the rendezvous still finds
  it taken), so two jobs on one node never draw the same port;
* :func:`init_distributed` — env:// rendezvous with a timeout and an error naming host, port and
  ranks, after failing fast on a multi-node rendezvous host that resolves to loopback.

The parent side (starting the ranks, timeouts, records of failures) is :mod:`benchbench.launch.run_job`.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class RankEnv:
    """Who this process is in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "single"


def first_host(nodelist: str) -> str:
    """First host of a Slurm hostlist expression: ``gpu[07-09,12],cpu3`` -> ``gpu07``."""
    depth, end = 0, len(nodelist)
    for i, ch in enumerate(nodelist):  # the first top-level comma ends the first host pattern
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            end = i
            break
    pattern = nodelist[:end].strip()
    if not pattern:
        raise ValueError(f"empty Slurm nodelist {nodelist!r}")
    # each [a-b,c] group contributes its first value, zero padding kept
    return re.sub(r"\[([^\]]+)\]", lambda m: re.split(r"[-,]", m.group(1))[0], pattern)


def rank_env_from_slurm(environ: dict[str, str] | None = None) -> dict[str, str]:
    """torch.distributed's env:// variables for a task started by ``srun``."""
    env = os.environ if environ is None else environ
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise RuntimeError("srun task without SLURM_STEP_NODELIST / SLURM_JOB_NODELIST: cannot find rank 0's host")
    if not env.get("BENCHBENCH_MASTER_PORT"):
        raise RuntimeError("srun task without BENCHBENCH_MASTER_PORT: start the ranks with `benchbench run`")
    out = {
        "RANK": env["SLURM_PROCID"],
        "WORLD_SIZE": env.get("SLURM_STEP_NUM_TASKS") or env["SLURM_NTASKS"],
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "MASTER_ADDR": env.get("BENCHBENCH_MASTER_ADDR") or first_host(nodelist),
        "MASTER_PORT": env["BENCHBENCH_MASTER_PORT"],
    }
    return out


def rank_env() -> RankEnv:
    """Rank identity: from Slurm's variables for ranks started by our ``srun`` (which also sets
    MASTER_ADDR / MASTER_PORT, :func:`rank_env_from_slurm`), from torchrun's (RANK, WORLD_SIZE,
    LOCAL_RANK), else one process."""
    if os.environ.get("BENCHBENCH_LAUNCHER") == "srun":
        os.environ.update(rank_env_from_slurm())
        return RankEnv(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]), "srun")
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return RankEnv(
            int(os.environ["RANK"]),
            int(os.environ["WORLD_SIZE"]),
            int(os.environ.get("LOCAL_RANK", 0)),
            "torchrun",
        )
    return RankEnv()


def _check_rendezvous_host(host: str) -> None:
    """Fail fast on the classic multi-node hang: a rendezvous host that resolves to loopback,
    so every node would wait for a world of its own."""
    nnodes = int(os.environ.get("SLURM_STEP_NUM_NODES") or os.environ.get("SLURM_NNODES") or 1)
    if nnodes <= 1:
        return
    try:
        addr = socket.gethostbyname(host)
    except OSError as e:
        raise RuntimeError(f"rendezvous host {host!r} does not resolve on {socket.gethostname()}: {e}") from None
    if addr.startswith("127.") or addr == "::1":
        raise RuntimeError(
            f"rendezvous host {host!r} resolves to loopback {addr} on {socket.gethostname()} in a {nnodes}-node "
            "job: each node would form a world of its own and hang. Fix /etc/hosts or set BENCHBENCH_MASTER_ADDR."
        )


def init_distributed(env: RankEnv, backend: str, timeout_s: float, device_id: Any = None) -> None:
    """Join the job's process group (env:// rendezvous); a rendezvous that does not complete
    within ``timeout_s`` fails with an error naming host, port and ranks. ``timeout_s`` (the job's
    ``collective_timeout_s``) also bounds every collective: torch applies one timeout to both, so a
    rank blocked in a collective raises after it. ``device_id`` (GPU) binds the group to this
    rank's device, so NCCL communicators form eagerly on the right GPU."""
    import torch.distributed as dist

    host, port = os.environ.get("MASTER_ADDR", "?"), os.environ.get("MASTER_PORT", "?")
    if env.launcher == "srun":
        _check_rendezvous_host(host)
    try:
        dist.init_process_group(
            backend=backend,
            rank=env.rank,
            world_size=env.world_size,
            timeout=timedelta(seconds=timeout_s),
            device_id=device_id,
        )
    except Exception as e:
        raise RuntimeError(
            f"rendezvous failed: rank {env.rank} of {env.world_size} (local rank {env.local_rank}, "
            f"{socket.gethostname()}) could not form the {backend} group at MASTER_ADDR={host} "
            f"MASTER_PORT={port} within {timeout_s:.0f} s (launcher {env.launcher}): {e}"
        ) from e
