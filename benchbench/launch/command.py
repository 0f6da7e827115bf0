"""The command line and the environment that start every rank of a job.

:func:`rank_command` gives the three launchers side by side: one plain process for a
single-process plan, torch's elastic launcher (``torchrun``, through :mod:`benchbench.launch.torchrun`)
on one machine, ``srun`` inside a Slurm allocation (:func:`resolve_launcher` picks for ``auto``);
every rank runs :data:`RANK_MODULE` (or another entry point taking the same options).
:func:`free_port` finds a rendezvous port; :func:`rank_environment` is what the ranks inherit.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

from benchbench.launch.slurm import job_resources
from benchbench.spec.job import Job

LAUNCHERS = ("auto", "torchrun", "srun")
RANK_MODULE = "benchbench.rank.main"  # what every rank of a job runs
TORCHRUN_MODULE = "benchbench.launch.torchrun"  # torch.distributed.run (torchrun) without the interpreter's teardown


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
        TORCHRUN_MODULE,
        *_torchrun_rendezvous(port),
        "--nnodes=1",
        f"--nproc-per-node={job.world_size}",
        "--max-restarts=0",
        *rank,
    ]


def rank_environment(job: Job, launcher: str, timed_alone: bool) -> dict[str, str]:
    """The ranks' environment: this process's, with ``job``'s threads per rank (OpenMP, MKL),
    unbuffered output, and the launcher and ``timed_alone`` for the record."""
    threads = str(job.threads_per_rank)
    return {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PYTHONUNBUFFERED": "1",
        "BENCHBENCH_LAUNCHER": launcher,
        "BENCHBENCH_TIMED_ALONE": "1" if timed_alone else "0",
    }
