"""The parent side of a job: start its ranks, bound its time, always leave a record.

:func:`run_job` checks feasibility, starts the ranks — torch's elastic launcher
(``torch.distributed.run --standalone``, through :mod:`benchbench.launch.elastic`) on one machine,
``srun`` inside a Slurm allocation, one plain process for single-process plans — watches their heartbeats
(:mod:`benchbench.protocol.heartbeat`), kills a job that hangs or outlives its ``timeout_s``, and leaves a
record whatever happens: ``ok`` from rank 0, ``infeasible`` or ``failed`` with the error and its
classification (:mod:`benchbench.protocol.failure`) otherwise. Every exit path kills every process of the
job; a signal to the parent (SIGTERM/SIGINT/SIGHUP) leaves no record and exits 128+signum. Each
rank runs :mod:`benchbench.rank.main`; the rank side of the rendezvous is :mod:`benchbench.rank.rendezvous`.
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
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchbench.protocol.failure import LOG_TAIL_CHARS, Evidence, Failure, RankError, addr_in_use, classify, oom_kills
from benchbench.protocol.heartbeat import Beat, read_beats
from benchbench.protocol.lifeline import die_with_parent
from benchbench.protocol.record import make_record, read_record, write_record
from benchbench.spec.job import Job

ERROR_TAIL_CHARS = LOG_TAIL_CHARS  # one limit for every log tail a record or log gets
LAUNCHERS = ("auto", "torchrun", "srun")
POLL_S = 0.25  # the watchdog's period
PORT_RETRIES = 3  # fresh-port relaunches after a rendezvous port found in use
PARENT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
SRUN_GRACE_S = 5.0  # how long srun may take to tear its step down after SIGTERM, before SIGKILL
RANK_MODULE = "benchbench.rank.main"  # what every rank of a job runs
ELASTIC_MODULE = "benchbench.launch.elastic"  # torch.distributed.run (torchrun) without the interpreter's teardown
EXIT_POLL_S = 0.01  # how often the parent looks whether the launcher exited
LOST_AFTER_S = 15.0  # a rank whose heartbeat nobody touched for this long, with no error and no exit: lost
BLIND_AFTER_S = 5.0  # a gap this long between the parent's looks: it was paused (suspended with its job), not listening


def resolve_launcher(launcher: str) -> str:
    """``auto``: srun inside a Slurm allocation (SLURM_JOB_ID set, srun on PATH), else torchrun."""
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher {launcher!r} not in {LAUNCHERS}")
    if launcher == "auto":
        return "srun" if os.environ.get("SLURM_JOB_ID") and shutil.which("srun") else "torchrun"
    return launcher


def free_port() -> int:
    """A TCP port no socket holds now (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _torchrun_rendezvous(port: int | None) -> list[str]:
    """``--standalone`` (torchrun binds a free port itself) unless a port is given."""
    if port is None:
        return ["--standalone"]  # local c10d rendezvous on a free port: concurrent jobs never collide
    rdzv = ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-conf=is_host=1"]
    return [*rdzv, f"--rdzv-id=benchbench-{os.getpid()}-{port}"]


# long: the three launchers' command lines side by side
def rank_command(
    job: Job,
    job_file: Path,
    out: Path,
    err_dir: Path,
    launcher: str = "torchrun",
    port: int | None = None,
    module: str = RANK_MODULE,
    rank_args: list[str] | None = None,
) -> list[str]:
    """The command line that starts every rank of ``job``; ``port``: torchrun's rendezvous port
    (else ``--standalone``; srun's ranks take theirs from BENCHBENCH_MASTER_PORT); ``module``: the
    rank entry point (:mod:`benchbench.rank.main`, or the calibration's), which takes the same options;
    ``rank_args``: its options instead of ``--job-file/--out/--err-dir`` (a batch's ``--batch F``)."""
    rank = ["-m", module, *(rank_args or ["--job-file", str(job_file), "--out", str(out), "--err-dir", str(err_dir)])]
    if not job.distributed:
        return [sys.executable, *rank]
    if launcher == "srun":
        from benchbench.launch.slurm import job_resources

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
        ELASTIC_MODULE,
        *_torchrun_rendezvous(port),
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


def _die_with_parent() -> None:
    """In the launcher's child, before exec: SIGTERM when ``benchbench run`` dies (torchrun then
    stops its ranks; they also die with torchrun, :func:`benchbench.protocol.lifeline.die_with_parent`).
    Imports nothing: a child forked from a threaded parent must not take the import lock."""
    die_with_parent(signal.SIGTERM)


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


def _stop_srun(pid: int) -> None:
    """SIGTERM ``srun`` (it forwards the signal to every task, on every node, and ends the step —
    a SIGKILLed srun could not) and wait up to :data:`SRUN_GRACE_S` for it to exit."""
    if _gone(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + SRUN_GRACE_S
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _kill_job(pgid: int | None, tmpdir: Path, srun: bool = False) -> None:
    """SIGKILL the launcher's process group and every process of the job outside it (torchrun
    starts each rank in a session of its own); ``srun``: the launcher (``pgid``, its pid) is srun,
    stopped with SIGTERM first (:func:`_stop_srun`)."""
    if srun and pgid is not None:
        _stop_srun(pgid)
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


def _gone(pid: int) -> bool:
    """Whether our child ``pid`` exited, without reaping it (its pid keeps naming its group)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _exited(proc: subprocess.Popen) -> bool:
    """Whether the launcher exited (not reaped)."""
    return _gone(proc.pid)


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


@dataclass
class Attempt:
    """One launch of the ranks: what the launcher printed, how it ended, what the watchdog saw."""

    output: str
    code: int | None
    killed: Failure | None  # the parent's verdict when it killed the job
    watch: Watch


def _run_ranks(cmd: list[str], env: dict[str, str], watch: Any, tmpdir: Path) -> Attempt:
    """Run the launcher in its own session, polling the heartbeats (``watch``: a :class:`Watch`,
    or a batch's :class:`BatchWatch`); kill the job on the watchdog's verdict, and kill whatever
    of it is left on every way out."""
    log_path = tmpdir / "launcher.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent
        )
    killed = None
    try:
        while not _exited(proc):
            _sleep_unless_exited(proc, POLL_S)
            watch.update()
            killed = watch.verdict()
            if killed:
                break
    finally:
        _kill_job(proc.pid, tmpdir, srun=cmd[0] == "srun")  # stragglers too, after a normal exit
        code = proc.wait()
    return Attempt(log_path.read_text(errors="replace"), None if killed else code, killed, watch)


def _sleep_unless_exited(proc: subprocess.Popen, seconds: float) -> None:
    """Sleep up to ``seconds``, returning early once the launcher exits (the job's record is ready
    then: no need to wait out the watchdog's period)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not _exited(proc):
        time.sleep(EXIT_POLL_S)


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


class Interrupted(BaseException):
    """``benchbench run`` got SIGTERM, SIGINT or SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _signals_interrupt() -> Iterator[None]:
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


def _interrupted_exit(job: Job, signum: int, started: float) -> SystemExit:
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


def _failed(job: Job, tmpdir: Path, attempt: Attempt, ooms: int) -> dict[str, Any]:
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
        with _signals_interrupt():
            return _launch(job, tmpdir, launcher, _rank_environment(job, launcher, True), module)
    except Interrupted:
        _kill_job(None, tmpdir)
        raise


def _launch(
    job: Job,
    tmpdir: Path,
    launcher: str,
    env: dict[str, str],
    module: str = RANK_MODULE,
    batch: Any = None,
) -> Attempt:
    """Launch the ranks; relaunch on a fresh port while the rendezvous finds its port in use
    (before any step ran, :data:`PORT_RETRIES` times). BENCHBENCH_MASTER_PORT, if set, is the
    first try's port; srun always gets a port the parent picked (rank 0 runs on this host).
    ``batch``: a batched launch (:class:`benchbench.launch.batch.Batch`: its rank options, folders and
    watchdog)."""
    port = int(env["BENCHBENCH_MASTER_PORT"]) if env.get("BENCHBENCH_MASTER_PORT") else None
    started = time.monotonic()  # retries share the job's timeout
    for retry in range(PORT_RETRIES + 1):
        if launcher == "srun" and port is None:
            port = free_port()
        if port is not None:
            env = {**env, "BENCHBENCH_MASTER_PORT": str(port)}
        args = batch.rank_args if batch else None
        cmd = rank_command(job, tmpdir / "job.json", tmpdir / "record.json", tmpdir, launcher, port, module, args)
        watch = batch.watch(started) if batch else Watch(job, tmpdir, started)
        attempt = _run_ranks(cmd, env, watch, tmpdir)
        stepped = any(b.steps for b in attempt.watch.beats.values())
        in_use = attempt.code != 0 and not attempt.killed and not stepped and _port_in_use(tmpdir, attempt.output)
        if not in_use or retry == PORT_RETRIES:
            return attempt
        sys.stderr.write(f"rendezvous port {port} in use: relaunching on a fresh port\n")
        for folder in batch.folders if batch else [tmpdir]:
            shutil.rmtree(folder / "hb", ignore_errors=True)
            for stale in folder.glob("rank*"):
                stale.unlink()
        port = free_port()
    raise AssertionError("unreachable")


def _port_in_use(tmpdir: Path, output: str) -> bool:
    texts = [output, *(p.read_text(errors="replace") for p in tmpdir.glob("rank*.err"))]
    return any(addr_in_use(t) for t in texts)


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
    ``SystemExit(128 + signum)`` (see :func:`_interrupted_exit`)."""
    out = Path(out)
    if reason is not None:
        failure = Failure("infeasible", reason.splitlines()[0] if reason else "infeasible")
        record = make_record(job=job, status="infeasible", error=reason, failure=failure.to_dict())
        return record, write_record(record, out)

    launcher = resolve_launcher(launcher) if job.distributed else "single"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        with _signals_interrupt():
            record = _run_in_tmpdir(job, out, launcher, timed_alone)
    except Interrupted as e:
        raise _interrupted_exit(job, e.signum, started) from None
    record["env"]["wall_time_s"] = round(time.monotonic() - started, 3)
    if retry_of:
        record["env"]["retry_of"] = retry_of
    return record, write_record(record, out)


def _remove_stale_tmpdirs(out: Path) -> None:
    """Remove what an earlier run of this job left beside its record when it was killed outright
    (SIGKILL leaves no chance to clean up): Snakemake never runs one output twice at once."""
    for stale in out.parent.glob(f".{out.stem}.*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def _run_in_tmpdir(job: Job, out: Path, launcher: str, timed_alone: bool) -> dict[str, Any]:
    """Launch in a temporary folder beside the record (not /tmp: on a cluster every node's ranks
    must reach it), removed after — also one a killed earlier run left; rank 0's ok record, or
    the failed one."""
    _remove_stale_tmpdirs(out)
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "job.json").write_text(json.dumps(job.to_dict()))
        ooms = oom_kills()
        try:
            attempt = _launch(job, tmpdir, launcher, _rank_environment(job, launcher, timed_alone))
        except Interrupted:
            _kill_job(None, tmpdir)  # a signal between Popen and its watch: the job's processes by name
            raise
        new_ooms = (oom_kills() or 0) - ooms if ooms is not None else 0
        if attempt.code != 0:
            sys.stderr.write(attempt.output[-ERROR_TAIL_CHARS:])
        if attempt.code == 0 and (tmpdir / "record.json").exists():
            return read_record(tmpdir / "record.json")
        return _failed(job, tmpdir, attempt, new_ooms)
