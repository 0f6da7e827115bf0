"""The parent side of a job, its lifecycle: start its ranks, bound its time, always leave a record.

:func:`run_job` checks feasibility, launches the ranks in a temporary folder beside the record
(:mod:`benchbench.launch.workdir`) — the command lines in :mod:`benchbench.launch.command`, one launch
under the heartbeat watchdog (:mod:`benchbench.launch.watchdog`) in :mod:`benchbench.launch.attempt` —
and leaves a record whatever happens: ``ok`` from rank 0, ``infeasible`` or ``failed`` with the
error and its classification (:func:`failure_of`, :mod:`benchbench.protocol.failure`) otherwise.
Every exit path kills every process of the job; a signal to the parent (SIGTERM/SIGINT/SIGHUP)
leaves no record and exits 128+signum (:mod:`benchbench.launch.teardown`). Each rank runs
:mod:`benchbench.rank.main`; the rank side of the rendezvous is :mod:`benchbench.rank.rendezvous`.
:func:`launch_ranks` is the same machinery for another entry point (``benchbench calibrate``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from benchbench.launch.attempt import Attempt, launch_attempt
from benchbench.launch.command import RANK_MODULE, rank_environment, resolve_launcher
from benchbench.launch.teardown import Interrupted, interrupted_exit, kill_job, signals_interrupt
from benchbench.launch.workdir import job_tmpdir
from benchbench.protocol.failure import LOG_TAIL_CHARS, Evidence, Failure, RankError, classify, oom_kills
from benchbench.protocol.record import make_record, read_record, write_record
from benchbench.spec.job import Job

ERROR_TAIL_CHARS = LOG_TAIL_CHARS  # one limit for every log tail a record or log gets


def _error_text(err_dir: Path, output: str, returncode: int | None) -> str:
    """The ranks' error files (each one's tail), else the launcher output's tail."""
    rank_errors = sorted(err_dir.glob("rank*.err"))
    if rank_errors:
        parts = [f"{p.stem}: {p.read_text().strip()[-ERROR_TAIL_CHARS:]}" for p in rank_errors]
        return "\n".join(parts)
    tail = output.strip()[-ERROR_TAIL_CHARS:]
    return f"ranks exited with code {returncode} and left no error; launcher output:\n{tail}"


def _evidence(job: Job, tmpdir: Path, attempt: Attempt, ooms: int) -> Evidence:
    """What the ranks left behind for :func:`~benchbench.protocol.failure.classify`."""
    errors = []
    for path in sorted(tmpdir.glob("rank*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        text = path.with_suffix(".err").read_text() if path.with_suffix(".err").exists() else ""
        errors.append(RankError(**info, text=text))
    where = {r: b.at() for r, b in attempt.watch.beats.items()}
    return Evidence(job.world_size, attempt.output, errors, where, ooms, attempt.watch.stall_text())


def failure_of(job: Job, tmpdir: Path, attempt: Attempt, ooms: int = 0) -> tuple[Failure, str]:
    """The classified failure of a launch that did not end well, and the longer error text."""
    ev = _evidence(job, tmpdir, attempt, ooms)
    failure = attempt.killed or classify(ev)
    if failure.kind == "rank_lost":  # the launcher may have seen the rank die by a signal after all
        seen = classify(ev)
        failure = seen if seen.kind in ("rank_killed", "out_of_memory") else failure
    if attempt.killed:
        failure.log_tail = (next(iter(e.text for e in ev.errors), "") or attempt.output)[-ERROR_TAIL_CHARS:]
    detail = _error_text(tmpdir, attempt.output, attempt.code)
    return failure, f"{failure.message}\n{detail}"


def failed_record(job: Job, tmpdir: Path, attempt: Attempt, ooms: int) -> dict[str, Any]:
    """The failed record of a launch that did not produce rank 0's ok record."""
    failure, error = failure_of(job, tmpdir, attempt, ooms)
    return make_record(job=job, status="failed", error=error, failure=failure.to_dict())


def launch_ranks(job: Job, tmpdir: Path, launcher: str = "auto", module: str = RANK_MODULE) -> Attempt:
    """Start ``module`` on every rank of ``job`` (``<tmpdir>/job.json`` is its ``--job-file``,
    ``<tmpdir>/record.json`` its ``--out``) with the job's machinery: launcher, environment,
    heartbeat watchdog, ``timeout_s``, no orphans. SIGTERM/SIGINT/SIGHUP raise :class:`Interrupted`
    after the job's processes are killed. What :func:`run_job` does for a job, for another entry
    point (``benchbench calibrate``)."""
    launcher = resolve_launcher(launcher) if job.distributed else "single"
    try:
        with signals_interrupt():
            return launch_attempt(job, tmpdir, launcher, rank_environment(job, launcher, True), module)
    except Interrupted:
        kill_job(None, tmpdir)
        raise


def run_job(
    job: Job,
    out: str | Path,
    reason: str | None = None,
    launcher: str = "auto",
    timed_alone: bool = True,
    retry_of: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """Run one job and leave its record at ``out`` (see :func:`~benchbench.protocol.record.write_record`);
    ``timed_alone`` says whether other timed jobs may run beside it, ``retry_of`` which failed
    record this run retries (both recorded in its ``env``).

    Returns the record and where it was written. Never raises for a failing job: the failure
    is the record. On SIGTERM/SIGINT/SIGHUP it kills the job, writes no record and raises
    ``SystemExit(128 + signum)`` (see :func:`~benchbench.launch.teardown.interrupted_exit`)."""
    out = Path(out)
    if reason is not None:
        failure = Failure("infeasible", reason.splitlines()[0] if reason else "infeasible")
        record = make_record(job=job, status="infeasible", error=reason, failure=failure.to_dict())
        return record, write_record(record, out)

    launcher = resolve_launcher(launcher) if job.distributed else "single"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        with signals_interrupt():
            record = _run_in_tmpdir(job, out, launcher, timed_alone)
    except Interrupted as e:
        raise interrupted_exit(job, e.signum, started) from None
    record["env"]["wall_time_s"] = round(time.monotonic() - started, 3)
    if retry_of:
        record["env"]["retry_of"] = retry_of
    return record, write_record(record, out)


def _run_in_tmpdir(job: Job, out: Path, launcher: str, timed_alone: bool) -> dict[str, Any]:
    """Launch in a temporary folder beside the record (:func:`~benchbench.launch.workdir.job_tmpdir`);
    rank 0's ok record, or the failed one."""
    with job_tmpdir(out) as tmpdir:
        (tmpdir / "job.json").write_text(json.dumps(job.to_dict()))
        ooms = oom_kills()
        try:
            attempt = launch_attempt(job, tmpdir, launcher, rank_environment(job, launcher, timed_alone))
        except Interrupted:
            kill_job(None, tmpdir)  # a signal between Popen and its watch: the job's processes by name
            raise
        new_ooms = (oom_kills() or 0) - ooms if ooms is not None else 0
        if attempt.code != 0:
            sys.stderr.write(attempt.output[-ERROR_TAIL_CHARS:])
        if attempt.code == 0 and (tmpdir / "record.json").exists():
            return read_record(tmpdir / "record.json")
        return failed_record(job, tmpdir, attempt, new_ooms)
