"""The parent side of a job: start its ranks, bound its time, always leave a record.

:func:`run_job` checks feasibility, starts the ranks — torch's elastic launcher
(``python -m torch.distributed.run --standalone``) on one machine, ``srun`` inside a Slurm
allocation, one plain process for single-process plans — enforces the job's timeout, and leaves a
record whatever happens: ``ok`` from rank 0, ``infeasible`` or ``failed`` with the error otherwise.
Each rank runs :mod:`benchbench.rank`; the rank side of the rendezvous is
:mod:`benchbench.rendezvous`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchbench.job import Job
from benchbench.record import make_record, read_record, write_record

ERROR_TAIL_CHARS = 4000
LAUNCHERS = ("auto", "torchrun", "srun")


def resolve_launcher(launcher: str) -> str:
    """``auto``: srun inside a Slurm allocation (SLURM_JOB_ID set, srun on PATH), else torchrun."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher {launcher!r} not in {LAUNCHERS}")
    if launcher == "auto":
        return "srun" if os.environ.get("SLURM_JOB_ID") and shutil.which("srun") else "torchrun"
    return launcher


def rank_command(job: Job, job_file: Path, out: Path, err_dir: Path, launcher: str = "torchrun") -> list[str]:
    """The command line that starts every rank of ``job``."""
    rank = ["-m", "benchbench.rank", "--job-file", str(job_file), "--out", str(out), "--err-dir", str(err_dir)]
    if not job.distributed:
        return [sys.executable, *rank]
    if launcher == "srun":
        from benchbench.slurm import job_resources

        res = job_resources(job)
        return [
            "srun",
            f"--ntasks={job.world_size}",
            f"--nodes={res['nodes']}",
            f"--ntasks-per-node={res['tasks_per_node'] or 1}",
            f"--cpus-per-task={res['cpus_per_task']}",
            "--kill-on-bad-exit=1",  # one rank dies: the step ends instead of hanging
            "--export=ALL",
            sys.executable,
            *rank,
        ]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # local c10d rendezvous on a free port: concurrent jobs never collide
        "--nnodes=1",
        f"--nproc-per-node={job.world_size}",
        "--max-restarts=0",
        *rank,
    ]


def _error_text(err_dir: Path, output: str, returncode: int | None) -> str:
    rank_errors = sorted(err_dir.glob("rank*.err"))
    if rank_errors:
        parts = [f"{p.stem}: {p.read_text().strip()[-ERROR_TAIL_CHARS:]}" for p in rank_errors]
        return "\n".join(parts)
    tail = output.strip()[-ERROR_TAIL_CHARS:]
    return f"ranks exited with code {returncode} and left no error; launcher output:\n{tail}"


def _rank_environment(job: Job, launcher: str, timed_alone: bool) -> dict[str, str]:
    threads = str(job.threads_per_rank)
    return {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PYTHONUNBUFFERED": "1",
        "BENCHBENCH_LAUNCHER": launcher,
        "BENCHBENCH_TIMED_ALONE": "1" if timed_alone else "0",
    }


def _run_ranks(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[str, int | None, bool]:
    """Run the launcher in its own session; on timeout kill it and every rank it started.
    Returns (combined output, return code, timed out)."""
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
        return output, proc.returncode, False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return output, proc.returncode, True


def run_job(
    job: Job,
    out: str | Path,
    reason: str | None = None,
    launcher: str = "auto",
    timed_alone: bool = True,
    retry_of: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """Run one job and leave its record at ``out`` (see :func:`~benchbench.record.write_record`);
    ``timed_alone`` says whether other timed jobs may run beside it, ``retry_of`` which failed
    record this run retries (both recorded in its ``env``).

    Returns the record and where it was written. Never raises for a failing job: the failure
    is the record."""
    out = Path(out)
    if reason is not None:
        record = make_record(job=job, status="infeasible", error=reason)
        return record, write_record(record, out)

    launcher = resolve_launcher(launcher) if job.distributed else "single"
    out.parent.mkdir(parents=True, exist_ok=True)
    # beside the record, not in /tmp: on a cluster every node's ranks must reach it
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as tmp:
        tmpdir = Path(tmp)
        job_file, tmp_out = tmpdir / "job.json", tmpdir / "record.json"
        job_file.write_text(json.dumps(job.to_dict()))
        started = time.monotonic()
        output, code, timed_out = _run_ranks(
            rank_command(job, job_file, tmp_out, tmpdir, launcher),
            _rank_environment(job, launcher, timed_alone),
            job.timeout_s,
        )
        sys.stderr.write(output[-ERROR_TAIL_CHARS:] if code else "")
        if not timed_out and code == 0 and tmp_out.exists():
            record = read_record(tmp_out)
        elif timed_out:
            msg = f"timeout: job still running after {job.timeout_s:.0f} s (timeout_s), killed"
            record = make_record(job=job, status="failed", error=msg + "\n" + _error_text(tmpdir, output, None))
        else:
            record = make_record(job=job, status="failed", error=_error_text(tmpdir, output, code))
        record["env"]["wall_time_s"] = round(time.monotonic() - started, 3)
        if retry_of:
            record["env"]["retry_of"] = retry_of
        return record, write_record(record, out)
