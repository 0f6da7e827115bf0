"""Starting a job's ranks, and each rank learning who it is.

* Parent side (:func:`run_job`): checks feasibility, starts the ranks with torch's elastic
  launcher (``python -m torch.distributed.run``; one plain process for single-process plans),
  enforces the job's timeout, and makes sure a record is left whatever happens: ``ok`` from
  rank 0, ``infeasible`` or ``failed`` with the error otherwise.
* Rank side (:func:`rank_env`, :func:`init_distributed`): rank, world size and local rank from
  the launcher's environment.
"""

from __future__ import annotations

import json
import os
import signal
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


def rank_env() -> RankEnv:
    """Rank identity from torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK), else one process."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return RankEnv(
            int(os.environ["RANK"]),
            int(os.environ["WORLD_SIZE"]),
            int(os.environ.get("LOCAL_RANK", 0)),
            "torchrun",
        )
    return RankEnv()


def init_distributed(env: RankEnv, backend: str, timeout_s: float) -> None:
    """Join the job's process group (env:// rendezvous set up by the launcher)."""
    import torch.distributed as dist

    dist.init_process_group(
        backend=backend, rank=env.rank, world_size=env.world_size, timeout=timedelta(seconds=timeout_s)
    )


def worker_command(job: dict[str, Any], spec_file: Path, out: Path, err_dir: Path) -> list[str]:
    """The command line that starts every rank of ``job`` on this machine."""
    worker = ["-m", "benchbench.worker", "--spec-file", str(spec_file), "--out", str(out), "--err-dir", str(err_dir)]
    if job["plan"].get("single_process"):
        return [sys.executable, *worker]
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


def run_job(job: dict[str, Any], out: str | Path, reason: str | None = None) -> tuple[dict[str, Any], Path]:
    """Run one job and leave its record at ``out`` (see :func:`~benchbench.record.write_record`).

    Returns the record and where it was written. Never raises for a failing job: the failure
    is the record."""
    out = Path(out)
    if reason is not None:
        record = make_record(job, "infeasible", reason)
        return record, write_record(record, out)

    threads = str(job.get("threads_per_rank", 1))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
    timeout = float(job.get("timeout_s", 900))
    with tempfile.TemporaryDirectory(prefix="benchbench-") as tmp:
        tmpdir = Path(tmp)
        spec_file, tmp_out = tmpdir / "job.json", tmpdir / "record.json"
        spec_file.write_text(json.dumps(job))
        cmd = worker_command(job, spec_file, tmp_out, tmpdir)
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
