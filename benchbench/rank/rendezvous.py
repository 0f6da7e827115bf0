"""The rank side of starting a job: who this process is, and joining the job's process group.

* :func:`rank_env` — rank, world size and local rank from the launcher's environment (Slurm's
  variables for ranks started by our ``srun``, torchrun's otherwise, else one process);
* :func:`init_distributed` — env:// rendezvous with a timeout and an error naming host, port and
  ranks, after failing fast on a multi-node rendezvous host that resolves to loopback.

The parent side (starting the ranks, timeouts, records of failures) is :mod:`benchbench.launch.run_job`.
"""

from __future__ import annotations

import os
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


def rank_env() -> RankEnv:
    """Rank identity: from Slurm's variables for ranks started by our ``srun`` (which also sets
    MASTER_ADDR / MASTER_PORT, :mod:`benchbench.launch.slurm`), from torchrun's (RANK, WORLD_SIZE,
    LOCAL_RANK), else one process."""
    if os.environ.get("BENCHBENCH_LAUNCHER") == "srun":
        from benchbench.launch.slurm import rank_env_from_slurm

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
