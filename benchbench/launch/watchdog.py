"""The parent's watchdog over a job's ranks, from their heartbeats (:mod:`benchbench.protocol.heartbeat`).

:class:`Watch` reads the heartbeats every poll and gives the verdict that kills a job: ``job_timeout``
past its ``timeout_s``, ``collective_timeout`` when the ranks stopped stepping for the hang rule
(:meth:`~benchbench.spec.job.Job.hang_after_s`), ``rank_lost`` when a rank went silent
(:data:`LOST_AFTER_S`) with no error and no exit — named by :func:`lost_message`, with the state of
its process when it runs here and Slurm's word for its node (:func:`slurm_node_state`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchbench.protocol.failure import Failure
from benchbench.protocol.heartbeat import Beat, read_beats
from benchbench.spec.job import Job

LOST_AFTER_S = 15.0  # a rank whose heartbeat nobody touched for this long, with no error and no exit: lost
BLIND_AFTER_S = 5.0  # a gap this long between the parent's looks: it was paused (suspended with its job), not listening


@dataclass
class Watch:
    """The parent's view of the ranks' progress, from their heartbeats."""

    job: Job
    tmpdir: Path
    started: float = field(default_factory=time.monotonic)
    beats: dict[int, Beat] = field(default_factory=dict)
    last_step: float | None = None  # monotonic time a step count last changed
    walls: list[float] = field(default_factory=list)  # timed step walls seen (sampled)
    heard: dict[int, float] = field(default_factory=dict)  # rank -> monotonic time its liveness last changed
    looked: float | None = None  # monotonic time of the last update

    def update(self) -> None:
        """Read the heartbeats; note any rank that finished a step since the last look (and its
        wall, once past the warm-up), and when each rank's liveness touch last changed — by this
        host's clock, so a writer on another node with a skewed clock cannot look silent. After a
        gap of :data:`BLIND_AFTER_S` between looks this parent was not running (Slurm suspends a
        job's ranks and its parent together): it heard nothing, so no rank counts as silent then."""
        now = time.monotonic()
        if self.looked is not None and now - self.looked > BLIND_AFTER_S:
            self.heard = dict.fromkeys(self.heard, now)
        self.looked = now
        for rank, beat in read_beats(self.tmpdir).items():
            old = self.beats.get(rank)
            if beat.steps and (old is None or beat.steps != old.steps):
                self.last_step = now
                if beat.steps > self.job.warmup_steps:
                    self.walls.append(beat.wall)
            if old is None or beat.touched != old.touched or beat.time != old.time:
                self.heard[rank] = now
            self.beats[rank] = beat

    def silence(self, rank: int) -> float:
        """Seconds since this parent last saw ``rank``'s heartbeat change (0 if never seen)."""
        return time.monotonic() - self.heard.get(rank, time.monotonic())

    def median_known(self) -> bool:
        """Whether every rank finished a timed step (the watchdog's hang rule applies from then)."""
        done = [b for b in self.beats.values() if b.steps > self.job.warmup_steps]
        return bool(self.walls) and len(done) >= self.job.world_size

    def median(self) -> float:
        """Median of the timed step walls seen (0 before the first)."""
        walls = sorted(self.walls)
        return walls[len(walls) // 2] if walls else 0.0

    def stall(self) -> float:
        """Seconds since a rank last finished a step (since the start if none did)."""
        return time.monotonic() - (self.last_step or self.started)

    def laggard(self) -> Beat | None:
        """The rank furthest behind."""
        return min(self.beats.values(), key=lambda b: (b.steps, b.time), default=None)

    def stepping(self) -> bool:
        """Whether some rank is inside the step loop (a step finished, the last not yet)."""
        return any(b.phase == "steps" for b in self.beats.values())

    def alive(self) -> bool:
        """Whether every rank's liveness thread touched its heartbeat lately."""
        return bool(self.beats) and all(b.alive() for b in self.beats.values())

    def lost(self) -> list[Beat]:
        """Ranks that went silent: their liveness thread stopped touching the heartbeat for
        :data:`LOST_AFTER_S` before phase ``done``, and they left no error file. A rank that raises
        leaves one; one killed by a signal is seen by the launcher, which then exits. Silence with
        neither is a process gone where no launcher sees it: under srun, its node died (slurmd and
        slurmstepd with it), and srun waits for the controller to declare the node down."""
        silent = [b for _, b in sorted(self.beats.items()) if b.phase != "done" and self.silence(b.rank) > LOST_AFTER_S]
        return [b for b in silent if not (self.tmpdir / f"rank{b.rank}.json").exists()]

    def stall_text(self) -> str:
        """``no progress for 12 s at step 4 (median step 0.01 s)``, or "" before any step."""
        lag = self.laggard()
        if lag is None or self.last_step is None:
            return ""
        return f"no progress for {self.stall():.0f} s at step {lag.steps} (median step {self.median():.2g} s)"

    def verdict(self) -> Failure | None:
        """Kill now? ``job_timeout`` past ``timeout_s``; ``collective_timeout`` when ranks are
        stepping, every rank finished a timed step (a median is known), and none finished a step
        for :meth:`~benchbench.spec.job.Job.hang_after_s` of the median (before that, only ``timeout_s``)."""
        elapsed, job = time.monotonic() - self.started, self.job
        if elapsed >= job.timeout_s:
            return Failure("job_timeout", f"job_timeout after {job.timeout_s:g} s: {self._progress()}")
        lost = self.lost()
        if lost:
            return Failure("rank_lost", lost_message(lost, min(self.silence(b.rank) for b in lost)), lost[0].rank)
        if self.stepping() and self.median_known() and self.stall() > job.hang_after_s(self.median()):
            lag = self.laggard()
            state = "alive" if self.alive() else "not answering"
            msg = f"rank {lag.rank} stuck in a collective: {self.stall_text()}; ranks {state}, killed by the watchdog"
            return Failure("collective_timeout", msg, lag.rank if lag else None)
        return None

    def _progress(self) -> str:
        """Slow or hung, for the job-timeout message."""
        lag, total = self.laggard(), self.job.total_steps
        if lag is None:
            return "no rank reported yet (starting)"
        if self.last_step is None:
            return f"no step finished in {self.stall():.0f} s (rank {lag.rank} {lag.at()})"
        if self.stall() <= self.job.hang_after_s(self.median()):  # the watchdog's rule
            alive = "ranks alive" if self.alive() else "ranks not answering"
            return f"{alive}, progressing (step {lag.steps} of {total}, median {self.median():.2g} s) — slow, not hung"
        return f"no step finished for {self.stall():.0f} s on rank {lag.rank} (stuck at step {lag.steps})"


def lost_message(lost: list[Beat], silent_s: float) -> str:
    """``rank 1 on bb-node2 went silent at step 3: no heartbeat for 15 s, no error, no exit status
    (its process or its node is gone); Slurm: bb-node2 not responding``."""
    ranks = ", ".join(str(b.rank) for b in lost)
    hosts = sorted({b.host for b in lost if b.host})
    on = f" on {', '.join(hosts)}" if hosts else ""
    here = [f"{b.pid} {state}" for b in lost if (state := _local_state(b))]
    why = "its process or its node is gone"
    if here:
        why = f"its process {', '.join(here)}: alive, its heartbeat thread stalled"
    msg = (
        f"rank{'s' if len(lost) > 1 else ''} {ranks}{on} went silent {lost[0].at()}: no heartbeat for "
        f"{silent_s:.0f} s, no error, no exit status ({why})"
    )
    states = [f"{h} {s}" for h in hosts if (s := slurm_node_state(h))]
    return msg + (f"; Slurm: {', '.join(states)}" if states else "")


_PROC_STATES = {"T": "stopped", "t": "stopped", "D": "in uninterruptible sleep", "R": "running", "S": "sleeping"}


def _local_state(beat: Beat) -> str:
    """The state of ``beat``'s process when it runs on this host and still exists (``stopped``,
    ...), else "": a rank the launcher still holds whose liveness thread stopped (stopped by a
    signal, blocked on a hung file system, a call holding the GIL) is not gone."""
    if not beat.host or beat.host != socket.gethostname()[:32]:
        return ""
    try:
        stat = Path(f"/proc/{beat.pid}/stat").read_text()
        if b"benchbench" not in Path(f"/proc/{beat.pid}/cmdline").read_bytes():
            return ""  # its pid reused, or another pid namespace's
    except OSError:
        return ""
    code = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else ""
    return _PROC_STATES.get(code, f"state {code}") if code and code not in "ZX" else ""


def slurm_node_state(node: str) -> str:
    """Slurm's word for ``node`` when it is not healthy (``not responding``, ``down``, ``fail``), or
    "" (healthy, no Slurm here, or no answer in 5 s)."""
    if not os.environ.get("SLURM_JOB_ID") or not shutil.which("sinfo"):
        return ""
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-n", node, "-o", "%T"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    state = out.stdout.split()[0] if out.returncode == 0 and out.stdout.split() else ""
    if state.endswith("*"):
        return "not responding"
    return state.lower() if any(w in state.upper() for w in ("DOWN", "FAIL", "DRAIN")) else ""
