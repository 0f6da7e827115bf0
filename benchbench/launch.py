"""Starting a job's ranks, and each rank learning who it is.

* Parent side (:func:`run_job`): checks feasibility, starts the ranks — with torch's elastic
  launcher (``python -m torch.distributed.run --standalone``) on one machine, with ``srun``
  inside a Slurm allocation, one plain process for single-process plans — enforces the job's
  timeout, and makes sure a record is left whatever happens: ``ok`` from rank 0, ``infeasible``
  or ``failed`` with the error otherwise.
* Rank side (:func:`rank_env`, :func:`init_distributed`): rank, world size and local rank from
  the launcher's environment; rendezvous with a timeout and an error naming host, port and ranks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchbench.record import make_record, read_record, write_record

ERROR_TAIL_CHARS = 4000


@dataclass(frozen=True)
class RankEnv:
    """Who this process is in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str = "single"


LAUNCHERS = ("auto", "torchrun", "srun")


def rank_env() -> RankEnv:
    """Rank identity: from Slurm's variables for ranks started by our ``srun`` (which also sets
    MASTER_ADDR / MASTER_PORT, :mod:`benchbench.slurm`), from torchrun's (RANK, WORLD_SIZE,
    LOCAL_RANK), else one process."""
    if os.environ.get("BENCHBENCH_LAUNCHER") == "srun":
        from benchbench.slurm import rank_env_from_slurm

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


def init_distributed(env: RankEnv, backend: str, timeout_s: float) -> None:
    """Join the job's process group (env:// rendezvous); a rendezvous that does not complete
    within ``timeout_s`` fails with an error naming host, port and ranks."""
    import torch.distributed as dist

    host, port = os.environ.get("MASTER_ADDR", "?"), os.environ.get("MASTER_PORT", "?")
    if env.launcher == "srun":
        _check_rendezvous_host(host)
    try:
        dist.init_process_group(
            backend=backend, rank=env.rank, world_size=env.world_size, timeout=timedelta(seconds=timeout_s)
        )
    except Exception as e:
        raise RuntimeError(
            f"rendezvous failed: rank {env.rank} of {env.world_size} (local rank {env.local_rank}, "
            f"{socket.gethostname()}) could not form the {backend} group at MASTER_ADDR={host} "
            f"MASTER_PORT={port} within {timeout_s:.0f} s (launcher {env.launcher}): {e}"
        ) from e


def resolve_launcher(launcher: str) -> str:
    """``auto``: srun inside a Slurm allocation (SLURM_JOB_ID set, srun on PATH), else torchrun."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher {launcher!r} not in {LAUNCHERS}")
    if launcher == "auto":
        return "srun" if os.environ.get("SLURM_JOB_ID") and shutil.which("srun") else "torchrun"
    return launcher


def worker_command(
    job: dict[str, Any], spec_file: Path, out: Path, err_dir: Path, launcher: str = "torchrun"
) -> list[str]:
    """The command line that starts every rank of ``job``."""
    worker = ["-m", "benchbench.worker", "--spec-file", str(spec_file), "--out", str(out), "--err-dir", str(err_dir)]
    if job["plan"].get("single_process"):
        return [sys.executable, *worker]
    if launcher == "srun":
        from benchbench.slurm import job_resources

        res = job_resources(job)
        return [
            "srun",
            f"--ntasks={job['world_size']}",
            f"--nodes={res['nodes']}",
            f"--ntasks-per-node={res['tasks_per_node'] or 1}",
            f"--cpus-per-task={res['cpus_per_task']}",
            "--kill-on-bad-exit=1",  # one rank dies: the step ends instead of hanging
            "--export=ALL",
            sys.executable,
            *worker,
        ]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # local c10d rendezvous on a free port: concurrent jobs never collide
        "--nnodes=1",
        f"--nproc-per-node={job['world_size']}",
        "--max-restarts=0",
        *worker,
    ]


def _error_text(err_dir: Path, output: str, returncode: int | None) -> str:
    rank_errors = sorted(err_dir.glob("rank*.err"))
    if rank_errors:
        parts = [f"{p.stem}: {p.read_text().strip()[-ERROR_TAIL_CHARS:]}" for p in rank_errors]
        return "\n".join(parts)
    tail = output.strip()[-ERROR_TAIL_CHARS:]
    return f"ranks exited with code {returncode} and left no error; launcher output:\n{tail}"


def run_job(
    job: dict[str, Any], out: str | Path, reason: str | None = None, launcher: str = "auto"
) -> tuple[dict[str, Any], Path]:
    """Run one job and leave its record at ``out`` (see :func:`~benchbench.record.write_record`).

    Returns the record and where it was written. Never raises for a failing job: the failure
    is the record."""
    out = Path(out)
    if reason is not None:
        record = make_record(job, "infeasible", reason)
        return record, write_record(record, out)

    threads = str(job.get("threads_per_rank", 1))
    launcher = "single" if job["plan"].get("single_process") else resolve_launcher(launcher)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PYTHONUNBUFFERED": "1",
        "BENCHBENCH_LAUNCHER": launcher,
    }
    timeout = float(job.get("timeout_s", 900))
    out.parent.mkdir(parents=True, exist_ok=True)
    # beside the record, not in /tmp: on a cluster every node's ranks must reach it
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as tmp:
        tmpdir = Path(tmp)
        spec_file, tmp_out = tmpdir / "job.json", tmpdir / "record.json"
        spec_file.write_text(json.dumps(job))
        cmd = worker_command(job, spec_file, tmp_out, tmpdir, launcher)
        started = time.monotonic()
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and every rank it started
            output, _ = proc.communicate()
            timed_out = True
        sys.stderr.write(output[-ERROR_TAIL_CHARS:] if proc.returncode else "")

        if not timed_out and proc.returncode == 0 and tmp_out.exists():
            record = read_record(tmp_out)
        elif timed_out:
            msg = f"timeout: job still running after {timeout:.0f} s (timeout_s), killed"
            record = make_record(job, "failed", msg + "\n" + _error_text(tmpdir, output, None))
        else:
            record = make_record(job, "failed", _error_text(tmpdir, output, proc.returncode))
        record.setdefault("env", {})
        record["env"]["wall_time_s"] = round(time.monotonic() - started, 3)
        return record, write_record(record, out)
