"""The marker check of tests/conftest.py: the commands that start ranks, Snakemake or a browser
are the ones the launcher and the tests really run, and a child Python of a guarded test records
what it starts (so ranks started behind a CLI are caught too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchbench.costmodel.run_calibration import RANK_MODULE as CALIBRATION_MODULE
from benchbench.launch.command import rank_command
from tests.helpers.jobs import make_test_job
from tests.helpers.launches import CHILD_GUARD, GUARD_ENV, forbidden_launch, record_launch

FILES = (Path("job.json"), Path("out.json"), Path("err"))


@pytest.mark.parametrize("launcher", ["torchrun", "srun"])
def test_the_launchers_rank_commands_are_launches(launcher):
    job = make_test_job("ddp", 2)
    assert forbidden_launch(rank_command(job, *FILES, launcher))
    assert forbidden_launch(rank_command(job, *FILES, launcher, module=CALIBRATION_MODULE))
    assert forbidden_launch(rank_command(make_test_job("single", 1), *FILES, launcher))


@pytest.mark.parametrize(
    "args",
    [
        [str(Path(sys.executable).with_name("snakemake")), "--configfile", "c.yaml"],
        [sys.executable, "-m", "snakemake", "-n"],
        [sys.executable, "-c", "import torch.distributed as dist\ndist.init_process_group('gloo')"],
        "/venv/lib/python3.11/site-packages/playwright/driver/node run-driver",
    ],
)
def test_snakemake_a_process_group_and_a_browser_are_launches(args):
    assert forbidden_launch(args)


@pytest.mark.parametrize(
    "args",
    [
        [sys.executable, "-m", "benchbench", "calibrate", "--spec", "s.json"],  # its ranks are caught in the child
        [sys.executable, "-c", "from benchbench.rank.loop import freeze_imports"],
        ["git", "-C", ".", "rev-parse", "HEAD"],
        ["/tmp/x/bin/srun", "/tmp/x"],  # a fake srun, named so for the watchdog's tests
    ],
)
def test_other_commands_are_not(args):
    assert forbidden_launch(args) is None


def test_a_child_python_records_the_ranks_it_starts(tmp_path):
    """What a CLI would do: a child starts a (harmless) command that names a rank module."""
    log = tmp_path / "launches.log"
    grandchild = [sys.executable, "-c", "pass", "-m", "benchbench.rank.main"]
    code = f"import subprocess; subprocess.run({grandchild!r}, check=True)"
    env = os.environ | {GUARD_ENV: str(log), "PYTHONPATH": CHILD_GUARD}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert log.read_text().startswith("a rank (benchbench.rank.main): ")


def test_a_child_given_its_own_environment_keeps_the_guard(tmp_path):
    """A test that passes ``env=`` to a child does not shed the guard: the audit hook names the
    launch log and puts the child guard first on that environment's PYTHONPATH."""

    env = {"PYTHONPATH": "/somewhere"}
    log = str(tmp_path / "launches.log")
    old = os.environ.get(GUARD_ENV)
    os.environ[GUARD_ENV] = log
    try:
        record_launch("subprocess.Popen", ("python", ["python", "-c", "pass"], None, env))
    finally:
        if old is None:
            del os.environ[GUARD_ENV]
        else:
            os.environ[GUARD_ENV] = old
    assert env[GUARD_ENV] == log
    assert env["PYTHONPATH"].split(os.pathsep) == [CHILD_GUARD, "/somewhere"]
