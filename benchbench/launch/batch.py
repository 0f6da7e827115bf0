"""Batched launches, the parent side: several jobs of the same hardware, world size and threads
per rank run inside one launch of ranks, one after another (opt-in; :func:`run_batch`).

The ranks (``python -m benchbench.rank.main --batch F``) join the process group once and share the
interpreter and its imports; each job still has its own folder (its ``job.json``, heartbeats, error
files and rank 0's record), its own timing, peak-memory reset and verification, and its record says
``env.batch: {index, size}``. The parent's watchdog (:class:`BatchWatch`) follows the job whose
folder the heartbeats moved to, each job's clock (``timeout_s``, the hang rule) starting with it. A
job that raises, kills or hangs a rank ends the launch: it gets its failed record (classified as for
a job alone, :mod:`benchbench.protocol.failure`) and the jobs not yet run are relaunched. Records
are written as :func:`benchbench.launch.run_job.run_job` writes them (a failed one never replaces an
ok one).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchbench.launch.attempt import Attempt, launch_attempt
from benchbench.launch.command import rank_environment, resolve_launcher
from benchbench.launch.run_job import ERROR_TAIL_CHARS, failed_record
from benchbench.launch.teardown import Interrupted, interrupted_exit, kill_job, signals_interrupt
from benchbench.launch.watchdog import Watch
from benchbench.launch.workdir import job_tmpdir
from benchbench.protocol.failure import oom_kills
from benchbench.protocol.lifeline import STARTED_FILE
from benchbench.protocol.record import read_record, write_record
from benchbench.spec.job import Job


def batch_key(job: Job) -> tuple[str, int, int, bool]:
    """What the jobs of one batch share: hardware, world size, threads per rank (and so whether
    they need a process group)."""
    return (job.hardware, job.world_size, job.threads_per_rank, job.distributed)


def check_batch(jobs: list[Job]) -> None:
    """Raise ``ValueError`` unless ``jobs`` (at least one) share :func:`batch_key`."""
    keys = sorted({batch_key(j) for j in jobs})
    if len(keys) != 1:
        raise ValueError(f"a batch's jobs must share (hardware, world_size, threads_per_rank, distributed); got {keys}")


@dataclass
class BatchWatch:
    """The watchdog of a batched launch: the :class:`~benchbench.launch.watchdog.Watch` of the job running
    now (the last whose folder has heartbeats), each job's clock starting when its heartbeats do."""

    jobs: list[Job]
    folders: list[Path]
    started: float
    watches: list[Watch] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.watches.append(Watch(self.jobs[0], self.folders[0], self.started))
        self.starts.append(self.started)

    @property
    def current(self) -> int:
        """The index (in this launch) of the job running now."""
        return len(self.watches) - 1

    @property
    def beats(self) -> dict[int, Any]:
        """The running job's heartbeats."""
        return self.watches[-1].beats

    def update(self) -> None:
        """Move to the next job once its heartbeats appear (every rank left the previous one at
        its closing barrier), then read the running job's."""
        while self.current + 1 < len(self.folders) and (self.folders[self.current + 1] / "hb").exists():
            now = time.monotonic()
            self.watches.append(Watch(self.jobs[self.current + 1], self.folders[self.current + 1], now))
            self.starts.append(now)
        self.watches[-1].update()

    def verdict(self) -> Any:
        """The running job's watchdog verdict (:meth:`~benchbench.launch.watchdog.Watch.verdict`)."""
        return self.watches[-1].verdict()

    def stall_text(self) -> str:
        """The running job's stall text."""
        return self.watches[-1].stall_text()


@dataclass
class Batch:
    """One launch of a batch's jobs not yet run: each one's folder under ``tmpdir``."""

    jobs: list[Job]
    folders: list[Path]
    tmpdir: Path

    @property
    def rank_args(self) -> list[str]:
        """The rank entry point's options (:mod:`benchbench.rank.main`)."""
        return ["--batch", str(self.tmpdir / "batch.json")]

    def watch(self, started: float) -> BatchWatch:
        """A fresh watchdog for one try of the launch."""
        return BatchWatch(self.jobs, self.folders, started)


def _prepare(jobs: list[Job], first: int, size: int, tmpdir: Path) -> Batch:
    """The folders and ``batch.json`` of the launch of ``jobs`` (indices ``first``... of ``size``)."""
    folders, entries = [], []
    for k, job in enumerate(jobs):
        folder = tmpdir / f"job{first + k}"
        folder.mkdir()
        (folder / "job.json").write_text(json.dumps(job.to_dict()))
        folders.append(folder)
        entries.append(
            {
                "job": job.to_dict(),
                "out": str(folder / "record.json"),
                "err_dir": str(folder),
                "index": first + k,
                "size": size,
            }
        )
    (tmpdir / "batch.json").write_text(json.dumps(entries))
    return Batch(jobs, folders, tmpdir)


def job_starts(batch: Batch, watch: BatchWatch) -> list[float]:
    """Each job's start, unix time: the launch's for the first (start-up included), else the time
    rank 0 wrote when it began the job (``started`` in its folder; rank 0 runs on this host) — not
    when the parent's 0.25 s poll first saw it, which can miss a whole short job. A job that never
    began: the launch's end. Consecutive starts bound each job's wall time."""
    to_unix = time.time() - time.monotonic()
    starts = [watch.started + to_unix]
    for folder in batch.folders[1:]:
        try:
            starts.append(float((folder / STARTED_FILE).read_text()))
        except (OSError, ValueError):
            starts.append(time.time())
    return starts


def _records(batch: Batch, attempt: Attempt, ooms: int, first: int, size: int) -> list[dict[str, Any]]:
    """The launch's records, in order: rank 0's ok ones, then the failed record of the first job
    that left none (the job in progress when the launch ended); the jobs after it are not run."""
    watch: BatchWatch = attempt.watch  # type: ignore[assignment]
    starts = job_starts(batch, watch)
    ends = [*starts[1:], time.time()]
    records = []
    for k, (job, folder) in enumerate(zip(batch.jobs, batch.folders, strict=True)):
        if (folder / "record.json").exists():
            record = read_record(folder / "record.json")
        else:
            seen = watch.watches[k] if k < len(watch.watches) else Watch(job, folder)
            record = failed_record(job, folder, Attempt(attempt.output, attempt.code, attempt.killed, seen), ooms)
            record["env"]["batch"] = {"index": first + k, "size": size}
        record["env"]["wall_time_s"] = round(max(ends[k] - starts[k], 0.0), 3)
        records.append(record)
        if record["status"] != "ok":
            break
    return records


def _launch_rest(jobs: list[Job], outs: list[Path], first: int, launcher: str, timed_alone: bool) -> list[dict]:
    """One launch of ``jobs[first:]``, in a temporary folder beside ``outs[first]``; its records."""
    with job_tmpdir(outs[first], "batch.") as tmpdir:
        batch = _prepare(jobs[first:], first, len(jobs), tmpdir)
        ooms = oom_kills()
        env = rank_environment(jobs[first], launcher, timed_alone)
        try:
            attempt = launch_attempt(jobs[first], tmpdir, launcher, env, batch=batch)
        except Interrupted:
            kill_job(None, tmpdir)
            raise
        new_ooms = (oom_kills() or 0) - ooms if ooms is not None else 0
        if attempt.code != 0:
            sys.stderr.write(attempt.output[-ERROR_TAIL_CHARS:])
        return _records(batch, attempt, new_ooms, first, len(jobs))


def run_batch(
    jobs: list[Job],
    outs: list[str | Path],
    launcher: str = "auto",
    timed_alone: bool = True,
    retry_of: str | None = None,
) -> list[tuple[dict[str, Any], Path]]:
    """Run ``jobs`` (sharing :func:`batch_key`) batched and leave each one's record at its entry
    of ``outs``; returns (record, where written) per job, in order. Relaunches after a failed job
    until every job has its record (``retry_of``: kept in each one's ``env``, as by
    :func:`~benchbench.launch.run_job.run_job`); never raises for a failing job. On SIGTERM/SIGINT/SIGHUP:
    as :func:`~benchbench.launch.run_job.run_job` (records already written stay)."""
    check_batch(jobs)
    if len(outs) != len(jobs):
        raise ValueError(f"{len(jobs)} jobs but {len(outs)} outputs")
    paths = [Path(o) for o in outs]
    launcher = resolve_launcher(launcher) if jobs[0].distributed else "single"
    written: list[tuple[dict[str, Any], Path]] = []
    started = time.monotonic()
    try:
        with signals_interrupt():
            while len(written) < len(jobs):
                for record in _launch_rest(jobs, paths, len(written), launcher, timed_alone):
                    if retry_of:
                        record["env"]["retry_of"] = retry_of
                    written.append((record, write_record(record, paths[len(written)])))
    except Interrupted as e:
        raise interrupted_exit(jobs[len(written)], e.signum, started) from None
    return written
