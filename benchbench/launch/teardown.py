"""Ending a job: no process of it outlives the parent's wish, and a signal to the parent ends all.

:func:`kill_job` kills every process of a job — the launcher's process group and the ranks outside
it (torchrun starts each rank in a session of its own), found by the job's temporary folder on their
command lines; ``srun`` is first stopped with SIGTERM (:func:`stop_srun`), so that it ends its step on
every node. :func:`signals_interrupt` turns SIGTERM/SIGINT/SIGHUP to the parent into
:class:`Interrupted`, and :func:`interrupted_exit` logs the record the job would have left and gives
the exit, 128 + signum.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchbench.protocol.failure import Failure
from benchbench.protocol.record import make_record
from benchbench.spec.job import Job

PARENT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
SRUN_GRACE_S = 5.0  # how long srun may take to tear its step down after SIGTERM, before SIGKILL


def gone(pid: int) -> bool:
    """Whether our child ``pid`` exited, without reaping it (its pid keeps naming its group)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _job_pids(tmpdir: Path) -> list[int]:
    """Processes whose command line names the job's temporary folder (launcher and ranks)."""
    needle, pids = str(tmpdir).encode(), []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "cmdline").read_bytes() and int(proc.name) != os.getpid():
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return pids


def stop_srun(pid: int) -> None:
    """SIGTERM ``srun`` (it forwards the signal to every task, on every node, and ends the step —
    a SIGKILLed srun could not) and wait up to :data:`SRUN_GRACE_S` for it to exit."""
    if gone(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + SRUN_GRACE_S
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def kill_job(pgid: int | None, tmpdir: Path, srun: bool = False) -> None:
    """SIGKILL the launcher's process group and every process of the job outside it (torchrun
    starts each rank in a session of its own); ``srun``: the launcher (``pgid``, its pid) is srun,
    stopped with SIGTERM first (:func:`stop_srun`)."""
    if srun and pgid is not None:
        stop_srun(pgid)
    try:
        if pgid is not None:
            os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in _job_pids(tmpdir):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Interrupted(BaseException):
    """``benchbench run`` got SIGTERM, SIGINT or SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """While inside: SIGTERM/SIGINT/SIGHUP raise :class:`Interrupted` (main thread only); the
    previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in PARENT_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _slurm_state() -> str | None:
    """The allocation's state as squeue says it (TIMEOUT, PREEMPTED, CANCELLED, ...), if it answers."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id or not shutil.which("squeue"):
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def interrupted_exit(job: Job, signum: int, started: float) -> SystemExit:
    """Log the record the job would have left (one line on stderr, which the workflow sends to the
    job's log) and the exit to raise: 128 + signum, no record at the output path."""
    name = signal.Signals(signum).name
    if os.environ.get("SLURM_JOB_ID"):
        state = _slurm_state()
        failure = Failure("scheduler_killed", f"{name} from the scheduler (job state {state or 'unknown'})")
    else:
        failure = Failure("interrupted", f"benchbench run got {name}")
    failure.signal = name
    record = make_record(job=job, status="failed", error=failure.message, failure=failure.to_dict())
    record["env"]["wall_time_s"] = round(time.monotonic() - started, 3)
    sys.stderr.write("interrupted, no record written: " + json.dumps(record) + "\n")
    sys.stderr.flush()
    return SystemExit(128 + signum)
