"""Shared fixtures (a tiny study config, fault injection into the ranks) and the check of the
markers: a test marked neither ``slow`` nor ``slurm`` fails if it, or a child process of it, starts
ranks, Snakemake or a browser (tests/helpers/launches.py). The helpers that test modules import
(jobs, records, calibrations, process checks) live in tests/helpers/."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from benchbench.spec.config import check_config
from benchbench.spec.schema import ROOT
from tests.helpers.jobs import TINY_GPT, TINY_MLP
from tests.helpers.launches import CHILD_GUARD, GUARD_ENV, record_launch

# An unknown collective is an error under the tests (a warning in runs): every rank inherits this.
os.environ["BENCHBENCH_STRICT_COMM"] = "1"

# The marker check: this process and, through child_guard/sitecustomize.py on PYTHONPATH, its
# child Pythons append the launches a test must not make to LAUNCH_LOG while a guarded test runs.
LAUNCH_LOG = Path(tempfile.mkdtemp(prefix="benchbench-launches-")) / "launches.log"
GUARDED_ENV = (GUARD_ENV, "PYTHONPATH")
sys.addaudithook(record_launch)
_saved_env: dict[str, str | None] = {}


def guarded(item: pytest.Item) -> bool:
    """A test that may start no ranks, Snakemake or browser: marked neither slow nor slurm."""
    return item.get_closest_marker("slow") is None and item.get_closest_marker("slurm") is None


def fail_on_launches(item: pytest.Item) -> None:
    """Fail ``item`` if it started what its markers do not allow (the log is emptied)."""
    found = LAUNCH_LOG.read_text().splitlines() if LAUNCH_LOG.exists() else []
    LAUNCH_LOG.unlink(missing_ok=True)
    if found:
        pytest.fail(f"{item.nodeid} starts ranks, Snakemake or a browser; mark it slow:\n" + "\n".join(found[:5]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """A guarded test runs with the launch log named and the child guard on PYTHONPATH."""
    _saved_env.clear()
    if guarded(item):
        _saved_env.update({k: os.environ.get(k) for k in GUARDED_ENV})
        LAUNCH_LOG.unlink(missing_ok=True)
        os.environ[GUARD_ENV] = str(LAUNCH_LOG)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (CHILD_GUARD, os.environ.get("PYTHONPATH")) if p)
    result = yield
    if guarded(item):
        fail_on_launches(item)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """The guarded test's own body starts no ranks, Snakemake or browser."""
    result = yield
    if guarded(item):
        fail_on_launches(item)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """After the teardown, the environment is what it was before the setup."""
    result = yield
    for key, value in _saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    LAUNCH_LOG.unlink(missing_ok=True)
    return result


@pytest.fixture
def tiny_config() -> dict[str, Any]:
    """A validated study config with a tiny gpt and mlp, 5 timed steps after 1 warm-up."""
    return check_config(
        {
            "study": "t",
            "models": {"gpt-tiny": dict(TINY_GPT, batch_size=8), "mlp-tiny": dict(TINY_MLP, batch_size=16)},
            "strategies": ["single", "dp-naive", "ddp"],
            "world_sizes": [1, 2],
            "steps": 5,
            "warmup_steps": 1,
            "timeout_s": 120,
        }
    )


@pytest.fixture
def fault(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Inject a fault into the ranks: ``fault(spec, mutant="fault", delay=None)`` puts
    tests/mutants/sitecustomize.py on the ranks' path with BENCHBENCH_FAULT=``spec``."""

    def set_fault(spec: str, mutant: str = "fault", delay: float | None = None) -> None:
        path = str(ROOT / "tests" / "mutants")
        monkeypatch.setenv("PYTHONPATH", path + os.pathsep + os.environ.get("PYTHONPATH", ""))
        monkeypatch.setenv("BENCHBENCH_MUTANT", mutant)
        monkeypatch.setenv("BENCHBENCH_FAULT", spec)
        if delay is not None:
            monkeypatch.setenv("BENCHBENCH_DELAY_S", str(delay))

    return set_fault
