"""One launch of a job's ranks: the launcher runs in a session of its own, dies with the parent,
and is polled under the watchdog (:class:`~benchbench.launch.watchdog.Watch`, or a batch's); the
job is killed on the watchdog's verdict and whatever of it is left is killed on every way out
(:func:`~benchbench.launch.teardown.kill_job`). :func:`launch_attempt` relaunches on a fresh port
while the rendezvous finds its port in use; what it returns, an :class:`Attempt`, is what the
parent knows of how the ranks ended.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbench.launch.command import RANK_MODULE, free_port, rank_command
from benchbench.launch.teardown import gone, kill_job
from benchbench.launch.watchdog import Watch
from benchbench.protocol.failure import Failure, addr_in_use
from benchbench.protocol.lifeline import die_with_parent
from benchbench.spec.job import Job

POLL_S = 0.25  # the watchdog's period
EXIT_POLL_S = 0.01  # how often the parent looks whether the launcher exited
PORT_RETRIES = 3  # fresh-port relaunches after a rendezvous port found in use


@dataclass
class Attempt:
    """One launch of the ranks: what the launcher printed, how it ended, what the watchdog saw."""

    output: str
    code: int | None
    killed: Failure | None  # the parent's verdict when it killed the job
    watch: Watch


def _die_with_parent() -> None:
    """In the launcher's child, before exec: SIGTERM when ``benchbench run`` dies (torchrun then
    stops its ranks; they also die with torchrun, :func:`benchbench.protocol.lifeline.die_with_parent`).
    Imports nothing: a child forked from a threaded parent must not take the import lock."""
    die_with_parent(signal.SIGTERM)


def _run_ranks(cmd: list[str], env: dict[str, str], watch: Any, tmpdir: Path) -> Attempt:
    """Run the launcher in its own session, polling the heartbeats (``watch``: a :class:`Watch`,
    or a batch's :class:`~benchbench.launch.batch.BatchWatch`); kill the job on the watchdog's
    verdict, and kill whatever of it is left on every way out."""
    log_path = tmpdir / "launcher.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent
        )
    killed = None
    try:
        while not gone(proc.pid):
            _sleep_unless_exited(proc, POLL_S)
            watch.update()
            killed = watch.verdict()
            if killed:
                break
    finally:
        kill_job(proc.pid, tmpdir, srun=cmd[0] == "srun")  # stragglers too, after a normal exit
        code = proc.wait()
    return Attempt(log_path.read_text(errors="replace"), None if killed else code, killed, watch)


def _sleep_unless_exited(proc: subprocess.Popen, seconds: float) -> None:
    """Sleep up to ``seconds``, returning early once the launcher exits (the job's record is ready
    then: no need to wait out the watchdog's period)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not gone(proc.pid):
        time.sleep(EXIT_POLL_S)


def launch_attempt(
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
    """Whether the launcher's output or a rank's error says the rendezvous port was taken."""
    texts = [output, *(p.read_text(errors="replace") for p in tmpdir.glob("rank*.err"))]
    return any(addr_in_use(t) for t in texts)
