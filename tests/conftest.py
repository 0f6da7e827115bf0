"""Shared fixtures: a tiny study config and fault injection into the ranks. The helpers that test
modules import (jobs, records, calibrations, process checks) live in tests/helpers/."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from benchbench.spec.config import check_config
from benchbench.spec.schema import ROOT
from tests.helpers.jobs import TINY_GPT, TINY_MLP

# An unknown collective is an error under the tests (a warning in runs): every rank inherits this.
os.environ["BENCHBENCH_STRICT_COMM"] = "1"


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
