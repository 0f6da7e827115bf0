"""Why a job failed, as data: the record's ``failure`` (kind, rank, signal, message, log tail).

:data:`FAILURE_KINDS` is the taxonomy (the record schema's enum is this tuple). The parent
(:mod:`benchbench.launch.run_job`) gathers the evidence a failed job leaves — each failing rank's error
file (``rank<R>.json``: exception type and last line, phase and step, time), the launcher's
output (torchrun's "Root Cause" block, srun's "task N: Killed" and slurmstepd's OOM line), the heartbeats
(:mod:`benchbench.protocol.heartbeat`), the cgroup's OOM-kill counter, its own timeout or watchdog verdict —
and :func:`classify` turns it into one :class:`Failure`. Definitions: docs/ARCHITECTURE.md
"Failures".
"""

from __future__ import annotations

import re
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FAILURE_KINDS = (
    "config",
    "infeasible",
    "rank_exception",
    "rank_killed",
    "rank_lost",
    "out_of_memory",
    "collective_timeout",
    "rendezvous_timeout",
    "job_timeout",
    "scheduler_killed",
    "interrupted",
)
LOG_TAIL_CHARS = 4000
# signals the launchers use to tear the other ranks down once one failed: never a root cause
TEARDOWN_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")
_OOM = re.compile(
    r"MemoryError|OutOfMemoryError|out of memory|can't allocate memory|cannot allocate memory|not enough memory"
    r"|std::bad_alloc|CUBLAS_STATUS_ALLOC_FAILED",
    re.I,
)  # python, torch (CUDA, DefaultCPUAllocator), OSError errno 12, C++ allocation, cuBLAS handle creation
_TIMEOUT = re.compile(r"timed out|timeout|deadline exceeded", re.I)
_PEER_LOST = re.compile(
    r"connection (closed|reset) by peer|broken pipe|connection refused|socket closed"
    r"|remote process exited or there was a network error|NCCL communicator was aborted|ncclRemoteError",
    re.I,
)  # gloo's and NCCL's words for a peer that died
_WAITING = re.compile(r"wait timeout|waiting for|timed out waiting", re.I)  # a rank left waiting for others
_ADDR_IN_USE = re.compile(r"address already in use|EADDRINUSE|errno 98", re.I)
_SOURCE_LOCATION = re.compile(r"\[[^\]\s]*\.(?:cc|cpp|h|hpp):\d+\]\s*")  # gloo's "[/__w/.../pair.cc:553] "
_TORCHRUN_CAUSE = re.compile(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", re.S)
_TORCHRUN_ENTRY = re.compile(r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", re.S)
_SRUN_TASK = re.compile(  # "srun: error: <node>: task 1: Killed" (the node is the rank's host)
    r"(?:([\w.-]+): )?tasks? (\d+)(?:-\d+)?: "
    r"(Out Of Memory|Killed|Terminated|Segmentation fault|Aborted|Exited with exit code (\d+))"
)
_SRUN_SIGNALS = {
    "Out Of Memory": "SIGKILL",
    "Killed": "SIGKILL",
    "Terminated": "SIGTERM",
    "Segmentation fault": "SIGSEGV",
    "Aborted": "SIGABRT",
}
_SLURM_OOM = re.compile(r"slurmstepd: error: Detected \d+ oom[_-]kill event")  # the step's cgroup OOM killer


@dataclass
class Failure:
    """One failed job's classification (the record's ``failure``)."""

    kind: str
    message: str
    rank: int | None = None
    signal: str | None = None
    log_tail: str = ""

    def __post_init__(self) -> None:
        if self.kind not in FAILURE_KINDS:
            raise ValueError(f"failure kind {self.kind!r} not in {FAILURE_KINDS}")
        self.message = " ".join(self.message.split())  # one line
        self.log_tail = self.log_tail[-LOG_TAIL_CHARS:]

    def to_dict(self) -> dict[str, Any]:
        """The record's ``failure`` object."""
        return asdict(self)


@dataclass
class RankExit:
    """How the launcher saw one rank end: its exit code, or the signal that killed it."""

    rank: int
    exitcode: int | None = None
    signal: str | None = None
    oom: bool = False  # srun said "Out Of Memory"
    host: str = field(default="", compare=False)  # the node srun named for it ("" under torchrun)


def signal_name(num: int) -> str:
    """``9`` -> ``SIGKILL``."""
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def parse_launcher_output(text: str) -> RankExit | None:
    """The rank the launcher blames first: torchrun's "Root Cause (first observed failure)" block
    (``rank : 1`` / ``exitcode : -9``: killed by signal 9) — unless that rank exited by itself and
    one of torchrun's other "Failures" was killed by a signal that is not its teardown's
    (:func:`_killed_peer`) — else srun's task lines (:func:`_srun_cause`)."""
    m = _TORCHRUN_CAUSE.search(text)
    if m:
        rank, code = int(m.group(1)), int(m.group(2))
        cause = RankExit(rank, code, signal_name(-code) if code < 0 else None)
        return (_killed_peer(text[text.rfind("Failures:", 0, m.start()) : m.start()]) if code >= 0 else None) or cause
    return _srun_cause(text)


def _killed_peer(failures: str) -> RankExit | None:
    """In torchrun's list of other failures, a rank killed by a signal other than the teardown's.
    A rank whose peer was killed sees its sockets close and exits at once; torchrun's monitor then
    finds both dead in one pass and may name the one that exited its "Root Cause"."""
    for rank, code in _TORCHRUN_ENTRY.findall(failures):
        if int(code) < 0 and signal_name(-int(code)) not in TEARDOWN_SIGNALS:
            return RankExit(int(rank), int(code), signal_name(-int(code)))
    return None


def _srun_cause(text: str) -> RankExit | None:
    """Of srun's ``task N: ...`` lines, the cause: ``Out Of Memory`` first, else the first line
    that is not teardown — ``Terminated`` is always teardown, ``Killed`` once another task's
    failure came before it (``--kill-on-bad-exit``) — else the first line."""
    ranked, failed = [], False  # (not OOM, teardown, order, exit)
    for m in _SRUN_TASK.finditer(text):
        what, oom = m.group(3), m.group(3) == "Out Of Memory"
        teardown = what == "Terminated" or (what == "Killed" and failed)
        code = int(m.group(4)) if m.group(4) else None
        died = RankExit(int(m.group(2)), code, _SRUN_SIGNALS.get(what), oom, m.group(1) or "")
        ranked.append((not oom, teardown, len(ranked), died))
        failed = failed or not teardown
    return min(ranked, key=lambda r: r[:3])[3] if ranked else None


def addr_in_use(text: str) -> bool:
    """Whether ``text`` reports a port somebody else holds (a rendezvous worth retrying)."""
    return bool(_ADDR_IN_USE.search(text))


def oom_kills() -> int | None:
    """The OOM killer's kill count for this process's memory cgroup (v2 ``memory.events`` or v1
    ``memory.oom_control``), or ``None`` where neither is readable."""
    paths = [Path("/sys/fs/cgroup/memory.events"), Path("/sys/fs/cgroup/memory/memory.oom_control")]
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                paths.insert(0, Path("/sys/fs/cgroup") / line[3:].lstrip("/") / "memory.events")
    except OSError:
        pass
    for path in paths:
        try:
            m = re.search(r"^oom_kill (\d+)", path.read_text(), re.M)
        except OSError:
            continue
        if m:
            return int(m.group(1))
    return None


@dataclass
class RankError:
    """What a rank that raised wrote (``rank<R>.json``, by :mod:`benchbench.rank.main`)."""

    rank: int
    type: str
    line: str  # the exception's last line, ``Type: text``
    phase: str = ""
    step: int | None = None
    time: float = 0.0
    text: str = ""  # the traceback (``rank<R>.err``)

    @property
    def peer_lost(self) -> bool:
        """An error that follows another rank's death (its sockets closed), not a cause."""
        return bool(_PEER_LOST.search(self.line)) and not _TIMEOUT.search(self.line)

    @property
    def waiting(self) -> bool:
        """A timeout while waiting for other ranks: they, not this one, are the likely cause."""
        return bool(_WAITING.search(self.line))


def rank_error_kind(err: RankError) -> str:
    """The kind of one rank's exception."""
    if _OOM.search(err.type) or _OOM.search(err.line):
        return "out_of_memory"
    unreachable = _TIMEOUT.search(err.line) or _PEER_LOST.search(err.line) or addr_in_use(err.line)
    if err.phase == "rendezvous" and unreachable:
        return "rendezvous_timeout"
    if err.phase == "build" and err.type == "ValueError":
        return "config"
    if _TIMEOUT.search(err.line) or err.peer_lost:
        return "collective_timeout"
    return "rank_exception"


@dataclass
class Evidence:
    """Everything the parent knows about a failed job."""

    world_size: int
    output: str = ""  # the launcher's combined stdout and stderr
    errors: list[RankError] = field(default_factory=list)
    where: dict[int, str] = field(default_factory=dict)  # rank -> "at step 3" / "during build"
    oom_kills: int = 0  # the OOM killer's kills while the job ran
    stall: str = ""  # "no progress for 12 s at step 4 (median step 0.01 s)", when heartbeats say so


def _tail(ev: Evidence, rank: int | None) -> str:
    err = next((e for e in ev.errors if e.rank == rank), None)
    return (err.text if err else "") or ev.output


def _suspect(ev: Evidence, err: RankError) -> int:
    """The rank to blame for ``err``: when ``err`` is a rank left waiting (or that lost its peer)
    and exactly one rank left no error, that one (it never came, or hangs); else ``err``'s own."""
    silent = [r for r in range(ev.world_size) if r not in {e.rank for e in ev.errors}]
    return silent[0] if (err.waiting or err.peer_lost) and len(silent) == 1 else err.rank


def _clauses(*parts: str) -> str:
    """``parts`` joined by "; ", the empty ones left out."""
    return "; ".join(p for p in parts if p)


def _quoted(ev: Evidence, err: RankError) -> RankError:
    """The error to quote for a rendezvous that failed: a rank left waiting (it says who joined),
    whichever rank wrote first; else ``err``."""
    return next((e for e in sorted(ev.errors, key=lambda e: e.time) if e.waiting), err)


def _from_error(ev: Evidence, err: RankError) -> Failure:
    kind, at, rank = rank_error_kind(err), ev.where.get(err.rank, ""), _suspect(ev, err)
    line = _SOURCE_LOCATION.sub("", err.line)[:300]
    if kind == "collective_timeout":
        what = ev.stall or at.strip()
        stuck = f"rank {rank} stuck in a collective" + (f": {what}" if what else "")
        return Failure(kind, _clauses(stuck, f"rank {err.rank} gave up: {line}"), rank, None, _tail(ev, err.rank))
    if kind == "rendezvous_timeout":
        quoted = _quoted(ev, err)
        said = _SOURCE_LOCATION.sub("", quoted.line)[:300]
        msg = f"rank {rank} did not join the process group; rank {quoted.rank}: {said}"
        return Failure(kind, msg, rank, None, _tail(ev, quoted.rank))
    msgs = {
        "out_of_memory": f"rank {err.rank} out of memory {at}: {line}",
        "config": f"rank {err.rank} cannot build the job from its config: {line}",
    }
    msg = msgs.get(kind, f"rank {err.rank} raised {line} {at}")
    return Failure(kind, msg, err.rank, None, _tail(ev, err.rank))


def _oom_evidence(ev: Evidence, died: RankExit | None) -> str:
    """Why a SIGKILL was the OOM killer's, or ""."""
    if died and died.oom:
        return "out of memory (srun: Out Of Memory)"
    if _SLURM_OOM.search(ev.output):
        return "out of memory (slurmstepd: oom_kill event in the step)"
    return f"the OOM killer fired ({ev.oom_kills} kill(s) in the cgroup)" if ev.oom_kills > 0 else ""


def classify(ev: Evidence) -> Failure:
    """The failure of a job whose ranks ended on their own (not killed by the parent): the
    earliest rank exception that is a cause (not a lost peer), else the rank the launcher saw
    killed by a signal (the OOM killer's, if the cgroup or Slurm counted a kill), else the rank the
    launcher saw exit with an error and no error file (its peers' lost-peer errors are symptoms),
    else the launcher's word."""
    causes = sorted((e for e in ev.errors if not e.peer_lost), key=lambda e: (e.waiting, e.time))
    if causes:
        return _from_error(ev, causes[0])
    died = parse_launcher_output(ev.output)
    oom = _oom_evidence(ev, died)
    if died and died.signal and died.signal not in TEARDOWN_SIGNALS:
        on = f" on {died.host}" if died.host else ""
        msg = f"rank {died.rank} killed by {died.signal}{on} {ev.where.get(died.rank, '')}".strip()
        if died.signal == "SIGKILL" and oom:
            return Failure("out_of_memory", f"{msg}: {oom}", died.rank, died.signal, ev.output)
        return Failure("rank_killed", msg, died.rank, died.signal, ev.output)
    if oom and _SLURM_OOM.search(ev.output):  # no task line says which rank
        return Failure("out_of_memory", f"a rank of the step was killed: {oom}", None, None, ev.output)
    exited = died and died.exitcode and not died.signal and died.rank not in {e.rank for e in ev.errors}
    if ev.errors and not exited:
        return _from_error(ev, min(ev.errors, key=lambda e: e.time))
    if addr_in_use(ev.output) and not ev.errors:
        return Failure("rendezvous_timeout", "the launcher's rendezvous port is in use", None, None, ev.output)
    return _left_no_error(ev, died)


def _left_no_error(ev: Evidence, died: RankExit | None) -> Failure:
    """A rank the launcher saw end with no error file of its own; its peers' lost-peer errors follow."""
    rank = died.rank if died else None
    code = f"exit code {died.exitcode}" if died and died.exitcode is not None else "an error"
    msg = f"rank {rank} ended with {code} and left no error" if died else "ranks ended and left no error"
    peers = [f"rank {e.rank} then lost its peer: {_SOURCE_LOCATION.sub('', e.line)[:300]}" for e in ev.errors]
    return Failure("rank_exception", _clauses(msg, *peers), rank, died.signal if died else None, ev.output)
