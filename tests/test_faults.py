"""Every failure of a job is bounded in time, classified, explained, and leaves no process behind.

Unit tests of the classifier on real launcher output; then faults injected into real 2-rank jobs
(torchrun + gloo) through tests/mutants/sitecustomize.py (BENCHBENCH_MUTANT=fault,
BENCHBENCH_FAULT=<what>:<rank>:<step>), each checked for its time to fail, its record's
``failure`` and leftover processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchbench.launch.command import free_port
from benchbench.launch.run_job import run_job
from benchbench.launch.watchdog import LOST_AFTER_S, Watch, lost_message
from benchbench.protocol.failure import FAILURE_KINDS, Evidence, RankError, classify, parse_launcher_output
from benchbench.protocol.heartbeat import read_beats
from benchbench.protocol.record import make_record, validate_record
from benchbench.spec.schema import ROOT, load_schema
from tests.helpers.jobs import TINY_GPT, make_test_job
from tests.helpers.processes import orphans

# captured from torchrun 2.x: rank 1 SIGKILLed itself; rank 0 torn down with SIGTERM
TORCHRUN_KILLED = """\
W1130 06:45:49.482000 30794 torch/distributed/elastic/multiprocessing/api.py:1028] Sending process 30816 closing \
signal SIGTERM
E1130 06:45:49.498000 30794 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: -9) \
local_rank: 1 (pid: 30817) of binary: /work/main/.venv/bin/python
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
=======================================================
k.py FAILED
-------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-30_06:45:49
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 30816)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 30816
-------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-30_06:45:49
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 30817)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 30817
=======================================================
"""
TORCHRUN_EXITED = TORCHRUN_KILLED.replace("-9 (pid: 30817)  (SIGKILL)", "1 (pid: 30817) ").replace(
    "Signal 9 (SIGKILL) received by PID 30817", "To enable traceback see: https://pytorch.org/docs/"
)
PEER_LOST = RankError(
    0, "RuntimeError", "RuntimeError: [pair.cc:553] Connection closed by peer [127.0.0.1]:4235.", "steps", 2, 1.0
)


def test_failure_kinds_are_the_schema_enum():
    kind = load_schema("record")["properties"]["failure"]["properties"]["kind"]
    assert tuple(kind["enum"]) == FAILURE_KINDS  # scripts/sync-record-schema.py writes it


def test_parse_launcher_output():
    died = parse_launcher_output(TORCHRUN_KILLED)
    assert (died.rank, died.exitcode, died.signal) == (1, -9, "SIGKILL")  # the root cause, not the torn-down rank
    died = parse_launcher_output(TORCHRUN_EXITED)
    assert (died.rank, died.exitcode, died.signal) == (1, 1, None)
    died = parse_launcher_output("srun: error: node3: task 1: Killed\nsrun: Terminating StepId=12.0")
    assert (died.rank, died.signal) == (1, "SIGKILL")
    died = parse_launcher_output("srun: error: node3: task 0: Exited with exit code 2")
    assert (died.rank, died.exitcode, died.signal) == (0, 2, None)
    assert parse_launcher_output("Traceback ...\nRuntimeError: boom") is None


def test_classify_killed_rank_over_its_peers_symptom():
    ev = Evidence(2, TORCHRUN_KILLED, [PEER_LOST], {1: "at step 2"})
    f = classify(ev)
    assert (f.kind, f.rank, f.signal, f.message) == ("rank_killed", 1, "SIGKILL", "rank 1 killed by SIGKILL at step 2")
    nccl = RankError(0, "DistBackendError", "DistBackendError: NCCL communicator was aborted on rank 0.", "steps", 2)
    assert classify(Evidence(2, TORCHRUN_KILLED, [nccl])).kind == "rank_killed"  # the peer's death, not a cause
    ev.oom_kills = 1  # the cgroup's OOM killer fired meanwhile
    assert classify(ev).kind == "out_of_memory"
    exited = classify(Evidence(2, TORCHRUN_EXITED))  # no signal: not a killed rank
    assert (exited.kind, exited.rank, exited.signal) == ("rank_exception", 1, None)
    assert exited.message == "rank 1 ended with exit code 1 and left no error"


# captured from torchrun 2.13 (benchbench.launch.torchrun): rank 1 SIGKILLed at step 2; rank 0 lost its peer and
# exited 1 at once, so torchrun's monitor found both dead in one pass and named rank 0 its root cause
TORCHRUN_KILLED_PEER_FIRST = """\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
benchbench.rank.main FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-30_13:06:38
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 23248)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 23248
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-30_13:06:38
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 23247)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""


def test_a_killed_peer_beats_the_root_cause_that_exited():
    died = parse_launcher_output(TORCHRUN_KILLED_PEER_FIRST)
    assert (died.rank, died.exitcode, died.signal) == (1, -9, "SIGKILL")
    f = classify(Evidence(2, TORCHRUN_KILLED_PEER_FIRST, [PEER_LOST], {1: "at step 2"}))
    assert (f.kind, f.rank, f.signal) == ("rank_killed", 1, "SIGKILL")
    torn_down = TORCHRUN_KILLED_PEER_FIRST.replace("-9 (pid: 23248)  (SIGKILL)", "-15 (pid: 23248)  (SIGTERM)")
    died = parse_launcher_output(torn_down)  # a peer torn down with SIGTERM is no cause: the root cause stands
    assert (died.rank, died.exitcode, died.signal) == (0, 1, None)


def test_classify_exit_beats_a_peer_lost_symptom():
    f = classify(Evidence(2, TORCHRUN_EXITED, [PEER_LOST]))  # rank 1 exited 1, rank 0 lost its peer
    assert (f.kind, f.rank, f.signal) == ("rank_exception", 1, None)
    assert f.message.startswith("rank 1 ended with exit code 1 and left no error; rank 0 then lost its peer: ")
    hung = classify(Evidence(2, "", [PEER_LOST]))  # no exit seen for rank 1: alive or hung
    assert (hung.kind, hung.rank) == ("collective_timeout", 1)
    assert hung.message.startswith("rank 1 stuck in a collective; rank 0 gave up: RuntimeError: Connection closed")
    for err in (PEER_LOST, RankError(0, "RuntimeError", "RuntimeError: Timed out waiting 10000ms", "steps", 2)):
        for output in ("", TORCHRUN_EXITED):
            message = classify(Evidence(2, output, [err])).message
            assert not re.search(r":\s*;|:\s*$|;\s*;", message), message  # no empty clause


SRUN_CASES = [  # srun's output, (rank, exitcode, signal, oom)
    ("srun: error: node1: task 1: Out Of Memory\nsrun: error: node1: task 0: Killed", (1, None, "SIGKILL", True)),
    ("srun: error: node1: task 0: Terminated\nsrun: error: node1: task 1: Killed", (1, None, "SIGKILL", False)),
    (
        "srun: error: node1: task 0: Exited with exit code 1\nsrun: Job step aborted: Waiting up to 32 seconds for job "
        "step to finish.\nsrun: error: node1: task 1: Killed",
        (0, 1, None, False),
    ),
    (
        "srun: error: node1: task 1: Terminated\nsrun: error: node1: task 0: Segmentation fault",
        (0, None, "SIGSEGV", False),
    ),
    ("srun: error: node1: task 0: Terminated", (0, None, "SIGTERM", False)),  # teardown alone: still said
]


@pytest.mark.parametrize(("output", "want"), SRUN_CASES)
def test_parse_srun_lines_prefers_a_cause_over_teardown(output, want):
    died = parse_launcher_output(output)
    assert (died.rank, died.exitcode, died.signal, died.oom) == want


def test_srun_out_of_memory_is_out_of_memory():
    f = classify(Evidence(2, "srun: error: node1: task 1: Out Of Memory\n", [PEER_LOST], {1: "at step 2"}))
    assert (f.kind, f.rank, f.signal) == ("out_of_memory", 1, "SIGKILL")
    assert f.message.startswith("rank 1 killed by SIGKILL on node1 at step 2: out of memory")
    stepd = (
        "slurmstepd: error: Detected 1 oom_kill event in StepId=12.0. Some of the step tasks have been OOM "
        "Killed.\nsrun: error: node1: task 1: Killed\n"
    )
    f = classify(Evidence(2, stepd, [PEER_LOST]))
    assert (f.kind, f.rank, f.signal) == ("out_of_memory", 1, "SIGKILL")
    f = classify(Evidence(2, stepd.splitlines()[0]))  # no task line at all
    assert (f.kind, f.rank) == ("out_of_memory", None)


RDZV_OWN = RankError(
    1,
    "RuntimeError",
    "RuntimeError: rendezvous failed: rank 1 of 2 ...: The client socket has "
    "timed out after 10000ms while trying to connect to (127.0.0.1, 4242).",
    "rendezvous",
    0,
    2.0,
)
RDZV_WAIT = RankError(
    0,
    "RuntimeError",
    "RuntimeError: rendezvous failed: rank 0 of 2 ...: Timed out after 11 "
    "seconds waiting for clients. 1/2 clients joined.",
    "rendezvous",
    0,
    1.0,
)


@pytest.mark.parametrize("errors", [[RDZV_OWN], [RDZV_WAIT], [RDZV_OWN, RDZV_WAIT], [RDZV_WAIT, RDZV_OWN]])
def test_rendezvous_message_is_the_same_whoever_wrote_first(errors):
    f = classify(Evidence(2, "", errors))
    assert (f.kind, f.rank) == ("rendezvous_timeout", 1)
    waiting = RDZV_WAIT in errors
    assert f.message.startswith("rank 1 did not join the process group; " + ("rank 0: " if waiting else "rank 1: "))


@pytest.mark.parametrize(
    ("err", "kind", "rank"),
    [
        (RankError(1, "MemoryError", "MemoryError: x", "steps", 2), "out_of_memory", 1),
        (RankError(0, "OutOfMemoryError", "OutOfMemoryError: CUDA out of memory.", "steps", 2), "out_of_memory", 0),
        (RankError(0, "ValueError", "ValueError: hidden 30 not divisible by heads 4", "build", 0), "config", 0),
        (RankError(0, "ValueError", "ValueError: bad value", "steps", 3), "rank_exception", 0),  # not a config error
        (RankError(1, "RuntimeError", "RuntimeError: boom", "steps", 2), "rank_exception", 1),
        (
            RankError(0, "RuntimeError", "RuntimeError: [x.cc:78] Timed out waiting 10000ms for recv", "steps", 2),
            "collective_timeout",
            1,
        ),  # rank 0 waited; rank 1, which left no error, is the suspect
        (
            RankError(
                0, "RuntimeError", "RuntimeError: rendezvous failed: ... wait timeout after 10000ms", "rendezvous"
            ),
            "rendezvous_timeout",
            1,
        ),
        (
            RankError(
                0,
                "RuntimeError",
                "RuntimeError: [enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                "not enough memory: you tried to allocate 8589934592 bytes.",
                "steps",
                2,
            ),
            "out_of_memory",
            0,
        ),
        (RankError(1, "OSError", "OSError: [Errno 12] Cannot allocate memory", "steps", 2), "out_of_memory", 1),
        (RankError(1, "RuntimeError", "RuntimeError: std::bad_alloc", "build", 0), "out_of_memory", 1),
        (
            RankError(
                0,
                "RuntimeError",
                "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
                "steps",
                2,
            ),
            "out_of_memory",
            0,
        ),
        (
            RankError(
                0,
                "DistBackendError",
                "DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, remote process "
                "exited or there was a network error, NCCL version 2.21.5 ncclRemoteError: A call failed possibly "
                "due to a network error or a remote process exiting prematurely.",
                "steps",
                2,
            ),
            "collective_timeout",
            1,
        ),  # the peer died: rank 1, which left no error, is the suspect
        (
            RankError(0, "DistBackendError", "DistBackendError: NCCL communicator was aborted on rank 0.", "steps", 2),
            "collective_timeout",
            1,
        ),
        (
            RankError(0, "DistBackendError", "DistBackendError: ncclRemoteError: remote process failed", "steps", 2),
            "collective_timeout",
            1,
        ),
        (
            RankError(
                0,
                "RuntimeError",
                "RuntimeError: rendezvous failed: ... ProcessGroupNCCL is only supported with GPUs, no GPUs found!",
                "rendezvous",
            ),
            "rank_exception",
            0,
        ),  # not a timeout: not rendezvous
    ],
)
def test_classify_rank_errors(err, kind, rank):
    f = classify(Evidence(2, "", [err], {err.rank: "at step 2"}))
    assert (f.kind, f.rank) == (kind, rank)
    assert "\n" not in f.message


def test_records_carry_their_failure():
    job = make_test_job(steps=1, warmup_steps=0)
    ok = make_record(job=job, status="ok", step_time_s=[0.1], loss=[1.0])
    assert ok["failure"] is None and ok["schema_version"] == 4
    failed = make_record(job=job, status="failed", error="boom\nmore")
    assert failed["failure"]["kind"] == "rank_exception" and failed["failure"]["message"] == "boom"
    ok["failure"] = failed["failure"]
    with pytest.raises(Exception, match=r"not of type 'null'|is not valid"):
        validate_record(ok)
    failed["failure"] = None
    with pytest.raises(Exception, match="not of type 'object'"):
        validate_record(failed)


def test_free_port_never_returns_a_held_port():
    held = []
    try:
        for _ in range(20):
            port = free_port()
            s = socket.socket()
            s.bind(("", port))  # still free when picked, and held from now on
            s.listen()
            held.append(s)
        assert len({s.getsockname()[1] for s in held}) == 20  # concurrent picks while held differ
    finally:
        for s in held:
            s.close()


def _beat(
    tmp_path: Path, rank: int, steps: int, phase: str = "steps", age: float = 0.0, wall: float = 0.01, host: str = ""
) -> None:
    (tmp_path / "hb").mkdir(exist_ok=True)
    line = f"{steps} {phase} {time.time() - age:.3f} {wall} {os.getpid()} {host}\n"
    (tmp_path / "hb" / f"rank{rank}").write_text(line)


def test_watchdog_names_a_rank_that_went_silent(tmp_path):
    """A rank whose liveness stopped for LOST_AFTER_S with no error file and not done: rank_lost,
    naming the rank and its host, however long the job's timeouts are."""
    job = make_test_job(timeout_s=600.0, steps=10, warmup_steps=1)
    watch = Watch(job, tmp_path)
    _beat(tmp_path, 0, 3, host="bb-node1")
    _beat(tmp_path, 1, 3, host="bb-node2")
    hb1 = tmp_path / "hb" / "rank1"
    watch.update()
    watch.heard[1] = time.monotonic() - LOST_AFTER_S + 1
    watch.update()  # its heartbeat did not change
    assert watch.verdict() is None  # silent for less than LOST_AFTER_S: not yet
    watch.heard[1] = time.monotonic() - LOST_AFTER_S - 1
    watch.update()
    f = watch.verdict()
    assert (f.kind, f.rank) == ("rank_lost", 1), f
    silence = f"no heartbeat for {LOST_AFTER_S + 1:.0f} s"
    assert f.message.startswith(f"rank 1 on bb-node2 went silent at step 3: {silence}"), f
    (tmp_path / "rank1.json").write_text("{}")  # it raised: the launcher will say so, not the watchdog
    assert watch.verdict() is None
    (tmp_path / "rank1.json").unlink()
    _beat(tmp_path, 1, 11, "done", host="bb-node2")  # finished and exited: silence is expected
    watch.update()
    watch.heard[1] = time.monotonic() - LOST_AFTER_S - 1
    assert watch.verdict() is None
    _beat(tmp_path, 1, 4, host="bb-node2")  # a stale mtime (another node's clock) but a heartbeat that changes
    os.utime(hb1, (time.time() - 3600, time.time() - 3600))
    watch.update()
    assert watch.verdict() is None and watch.silence(1) < 1


def test_watchdog_paused_with_its_ranks_calls_no_rank_lost(tmp_path):
    """The parent stopped along with its ranks (Slurm suspends a job's processes together; SIGCONT
    may reach the parent first): on its first look after, every heartbeat is old, but the parent was
    not listening either — no rank_lost. Once it listens again, silence counts anew."""
    job = make_test_job(timeout_s=600.0, steps=10, warmup_steps=1)
    watch = Watch(job, tmp_path)
    _beat(tmp_path, 0, 3)
    _beat(tmp_path, 1, 3)
    watch.update()
    paused = time.monotonic() - LOST_AFTER_S - 5
    watch.heard, watch.looked = dict.fromkeys(watch.heard, paused), paused  # 20 s ago: then the pause
    watch.update()  # the heartbeats did not change: the ranks are not running yet either
    assert watch.verdict() is None and watch.silence(1) < 1
    watch.heard[1] = time.monotonic() - LOST_AFTER_S - 1  # silent while the parent looked every poll
    watch.update()
    assert watch.verdict().kind == "rank_lost"


def test_rank_lost_on_this_host_says_its_process_is_alive(tmp_path):
    """A rank on this host whose process is still there (SIGSTOP here; a hung file system or a call
    holding the GIL alike) went silent, but is not gone: the message says so, with its state."""
    code = (
        f"from benchbench.protocol import heartbeat; import time; heartbeat.start({str(tmp_path)!r}, 1); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while 1 not in read_beats(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGSTOP)
        stat = Path(f"/proc/{proc.pid}/stat")  # the stop is asynchronous: wait until the kernel shows it
        deadline = time.monotonic() + 10
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        beat = read_beats(tmp_path)[1]
        assert beat.pid == proc.pid and beat.host == socket.gethostname()[:32]
        msg = lost_message([beat], LOST_AFTER_S)
        assert f"(its process {proc.pid} stopped: alive, its heartbeat thread stalled)" in msg, msg
    finally:
        proc.kill()
        proc.wait()
    assert "(its process or its node is gone)" in lost_message([beat], LOST_AFTER_S)  # gone now


def test_heartbeat_line_carries_the_host(tmp_path):
    """The rank side writes its hostname; the parent reads it back (and reads older lines without)."""
    code = (
        f"from benchbench.protocol import heartbeat; heartbeat.start({str(tmp_path)!r}, 3); heartbeat.step(1, 5, 0.25)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)
    beat = read_beats(tmp_path)[3]
    assert (beat.rank, beat.steps, beat.phase, beat.host) == (3, 2, "steps", socket.gethostname()[:32])
    _beat(tmp_path, 4, 1)
    assert read_beats(tmp_path)[4].host == ""


def test_watchdog_tells_hung_from_slow(tmp_path):
    job = make_test_job(timeout_s=40.0, steps=10, warmup_steps=1)
    assert job.collective_timeout_s == 10 and job.hang_after_s(0.01) == 15 and job.hang_after_s(10.0) == 100
    watch = Watch(job, tmp_path)
    _beat(tmp_path, 0, 1, wall=3.0)  # the warm-up step: no timed step yet, no median
    _beat(tmp_path, 1, 1, wall=3.0)
    watch.update()
    watch.last_step = time.monotonic() - 31
    assert watch.verdict() is None  # before a median is known only timeout_s applies
    _beat(tmp_path, 0, 4, wall=10.0)
    watch.update()
    watch.last_step = time.monotonic() - 31
    assert watch.verdict() is None  # rank 1 has no timed step yet
    _beat(tmp_path, 1, 3, wall=10.0)
    watch.update()
    assert watch.verdict() is None  # a step just finished
    for long_step in (31, 45):  # ranks in lockstep on a long step, median 10 s: slow, not hung
        watch.last_step = time.monotonic() - long_step
        assert watch.verdict() is None, long_step
    watch.walls = [0.01]  # a 31 s silence at median 0.01 s: hung
    watch.last_step = time.monotonic() - 31
    f = watch.verdict()
    assert (f.kind, f.rank) == ("collective_timeout", 1)
    assert f.message == (
        "rank 1 stuck in a collective: no progress for 31 s at step 3 (median step 0.01 s); "
        "ranks alive, killed by the watchdog"
    )
    _beat(tmp_path, 0, 11, "after")  # out of the loop (probes, gate): the job timeout's business only
    _beat(tmp_path, 1, 11, "after", age=5)  # the last to write
    watch.update()
    watch.last_step = time.monotonic() - 31
    assert watch.verdict() is None
    watch.started = time.monotonic() - 40
    assert watch.verdict().message == "job_timeout after 40 s: no step finished for 31 s on rank 1 (stuck at step 11)"


def _fake_srun(tmp_path: Path, on_term: str) -> subprocess.Popen:
    """A process named ``srun`` (its command line names ``tmp_path``, as the job's do) running
    ``on_term`` on SIGTERM, in a session of its own."""
    (tmp_path / "bin").mkdir()
    srun = tmp_path / "bin" / "srun"
    srun.write_text(f"#!/bin/bash\ntrap '{on_term}' TERM\ntouch {tmp_path}/ready\nwhile :; do sleep 0.1; done\n")
    srun.chmod(0o755)
    proc = subprocess.Popen([str(srun), str(tmp_path)], start_new_session=True)
    while not (tmp_path / "ready").exists():
        time.sleep(0.02)
    return proc


def test_srun_is_stopped_with_sigterm_first(tmp_path):
    from benchbench.launch import teardown

    proc = _fake_srun(tmp_path, f"touch {tmp_path}/teardown; exit 0")  # srun forwards SIGTERM, tears the step down
    teardown.kill_job(proc.pid, tmp_path, srun=True)
    assert proc.wait(timeout=5) == 0 and (tmp_path / "teardown").exists()


def test_srun_deaf_to_sigterm_is_killed_after_the_grace(tmp_path, monkeypatch):
    from benchbench.launch import teardown

    monkeypatch.setattr(teardown, "SRUN_GRACE_S", 0.5)
    proc = _fake_srun(tmp_path, "true")  # ignores SIGTERM
    started = time.monotonic()
    teardown.kill_job(proc.pid, tmp_path, srun=True)
    assert proc.wait(timeout=5) == -signal.SIGKILL and 0.5 <= time.monotonic() - started < 3


# --- real jobs, with faults -------------------------------------------------------------------


def _run(tmp_path: Path, floor: float = 0.0, **changes) -> tuple[dict, float]:
    """Run a failing 2-rank job; its ``wall_time_s`` must lie within what the caller waited (which
    adds writing the record and the cleanup) and be at least ``floor`` s (the time to the fault)."""
    job = make_test_job("ddp", 2, **{"steps": 4, "warmup_steps": 1, "timeout_s": 40.0, **changes})
    started = time.monotonic()
    record, _ = run_job(job, tmp_path / "r.json")
    took = time.monotonic() - started
    validate_record(record)
    wall = record["env"]["wall_time_s"]
    assert record["status"] == "failed" and max(floor, 0.1) <= wall <= took, (wall, took)
    assert orphans(tmp_path) == []
    return record, took


FAULTS = [  # spec, kind, rank, signal, message start, time floor and bound (s; startup alone takes ~5-10 s here)
    ("raise:1:2", "rank_exception", 1, None, "rank 1 raised RuntimeError: boom at step 2", 0, 30),
    ("kill:1:2", "rank_killed", 1, "SIGKILL", "rank 1 killed by SIGKILL at step 2", 0, 30),
    ("oom:1:2", "out_of_memory", 1, None, "rank 1 out of memory at step 2: MemoryError: fault: allocated", 0, 30),
    ("hang:1:2", "collective_timeout", 1, None, "rank 1 stuck in a collective: no progress for 1", 10, 35),
    # the rank quoted: rank 0 (left waiting) if it wrote its error, else rank 1 (torn down first or not)
    ("rendezvous:1", "rendezvous_timeout", 1, None, "rank 1 did not join the process group; rank ", 10, 35),
]  # the floor: a collective or the rendezvous waits collective_timeout_s (10 s) before it gives up


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "kind", "rank", "sig", "message", "floor", "bound"), FAULTS, ids=[f[0] for f in FAULTS]
)
def test_fault_is_classified_in_bounded_time(tmp_path, fault, spec, kind, rank, sig, message, floor, bound):
    fault(spec)
    record, took = _run(tmp_path, floor)
    f = record["failure"]
    assert (f["kind"], f["rank"], f["signal"]) == (kind, rank, sig), f["message"]
    assert f["message"].startswith(message), f["message"]
    assert took < bound, f"{spec}: {took:.1f} s to fail"
    assert f["log_tail"] and len(f["log_tail"]) <= 4000
    assert record["error"].startswith(f["message"])


@pytest.mark.slow
def test_config_error_is_config(tmp_path):
    job = make_test_job("single", 1, model_cfg=dict(TINY_GPT, heads=3))
    record, _ = run_job(job, tmp_path / "r.json")
    f = record["failure"]
    assert (f["kind"], f["rank"]) == ("config", 0)
    assert f["message"] == (
        "rank 0 cannot build the job from its config: ValueError: gpt: hidden (32) must be divisible by heads (3)"
    )


@pytest.mark.slow
def test_slow_job_times_out_as_slow_not_hung(tmp_path, fault):
    fault("", mutant="slow-step", delay=0.5)
    record, took = _run(tmp_path, 16.0, steps=200, timeout_s=16.0)
    f = record["failure"]
    assert f["kind"] == "job_timeout" and f["rank"] is None
    assert f["message"].startswith("job_timeout after 16 s: ranks alive, progressing (step ")
    assert re.search(r"\(step \d+ of 201, median 0\.5\d* s\) — slow, not hung$", f["message"]), f["message"]
    assert 16 <= took < 22


@pytest.mark.slow
def test_busy_port_is_retried_on_a_fresh_one(tmp_path, monkeypatch, capfd):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        monkeypatch.setenv("BENCHBENCH_MASTER_PORT", str(port))  # the first try's port, taken
        record, _ = run_job(make_test_job("ddp", 2, steps=1, warmup_steps=0, timeout_s=40.0), tmp_path / "r.json")
    assert record["status"] == "ok", record["error"]
    assert f"rendezvous port {port} in use: relaunching on a fresh port" in capfd.readouterr().err
    assert orphans(tmp_path) == []


def _cli_run_stepping(tmp_path: Path, out: Path) -> subprocess.Popen:
    """``benchbench run`` of a slow 2-rank job in a subprocess, returned once a rank finished a step."""
    spec = json.dumps(make_test_job("ddp", 2, steps=100, warmup_steps=0, timeout_s=60.0).to_dict())
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchbench", "run", "--spec", spec, "--out", str(out), "--launcher", "torchrun"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 40
    while not any(p.read_text().split()[:1] not in ([], ["0"]) for p in tmp_path.glob(".x.*/hb/rank*")):
        assert time.monotonic() < deadline and proc.poll() is None, "no step finished"
        time.sleep(0.1)
    return proc


@pytest.mark.slow
def test_killed_parent_takes_its_job_along(tmp_path, fault):
    fault("", mutant="slow-step", delay=0.3)
    proc = _cli_run_stepping(tmp_path, tmp_path / "x.json")
    proc.kill()  # SIGKILL: no handler runs; PR_SET_PDEATHSIG does the work
    proc.communicate(timeout=10)
    assert orphans(tmp_path, within=10) == []


@pytest.mark.slow
def test_sigterm_leaves_no_record_and_no_process(tmp_path, fault):
    fault("", mutant="slow-step", delay=0.3)
    out = tmp_path / "x.json"
    proc = _cli_run_stepping(tmp_path, out)
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM and time.monotonic() - sent < 5
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no record, no temporary folder
    line = next(x for x in err.splitlines() if x.startswith("interrupted, no record written: "))
    would_be = json.loads(line.split(": ", 1)[1])
    assert would_be["failure"]["kind"] == "interrupted" and would_be["failure"]["signal"] == "SIGTERM"
    assert orphans(tmp_path) == []


def test_interrupt_inside_slurm_is_scheduler_killed(monkeypatch, capsys):
    from benchbench.launch import teardown

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setattr(teardown, "_slurm_state", lambda: "PREEMPTED")
    exc = teardown.interrupted_exit(make_test_job(), signal.SIGTERM, time.monotonic())
    assert exc.code == 143
    line = capsys.readouterr().err.strip()
    assert line.startswith("interrupted, no record written: ") and "\n" not in line
    failure = json.loads(line.split(": ", 1)[1])["failure"]
    assert failure == {
        "kind": "scheduler_killed",
        "rank": None,
        "signal": "SIGTERM",
        "message": "SIGTERM from the scheduler (job state PREEMPTED)",
        "log_tail": "",
    }


def test_a_temporary_folder_left_by_a_killed_run_is_removed_by_the_next(tmp_path):
    from benchbench.launch.workdir import remove_stale_tmpdirs

    (tmp_path / ".ws1-r0.k1ll3d").mkdir()
    (tmp_path / ".ws1-r0.k1ll3d" / "job.json").write_text("{}")
    (tmp_path / ".ws1-r0.json.abc.tmp").write_text("a record being written")  # a file: not ours to remove
    (tmp_path / ".ws2-r0.other").mkdir()  # another job's
    remove_stale_tmpdirs(tmp_path / "ws1-r0.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ws1-r0.json.abc.tmp", ".ws2-r0.other"]
