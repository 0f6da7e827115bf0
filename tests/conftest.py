"""Shared fixtures: tiny study configs and a helper that runs one job through the real launcher."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from benchbench.config import check_config
from benchbench.launch import run_job
from benchbench.study import make_spec

TINY_GPT = {"arch": "gpt", "layers": 2, "hidden": 32, "heads": 2, "seq_len": 16, "vocab": 64}
TINY_MLP = {"arch": "mlp", "width": 32, "depth": 2, "out_dim": 4}


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


def run(cfg: dict[str, Any], tmp_path: Path, model: str, strategy: str, ws: int, **job_changes: Any) -> dict:
    """Run one job of ``cfg`` (with ``job_changes`` applied to its spec) and return its record."""
    spec, reason = make_spec(cfg, model, "cpu-local", strategy, ws, 0)
    spec = copy.deepcopy(spec)
    spec.update(job_changes)
    record, _ = run_job(spec, tmp_path / f"{spec['id']}.json", reason)
    return record
