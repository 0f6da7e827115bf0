"""Tiny models, hand-built jobs, and one job run through the real launcher."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from benchbench.launch.run_job import run_job
from benchbench.spec.hardware import load_hardware
from benchbench.spec.job import Job, make_job
from benchbench.spec.plan import resolve_plan

CPU_LOCAL = load_hardware("cpu-local")
TINY_GPT = {"arch": "gpt", "layers": 2, "hidden": 32, "heads": 2, "seq_len": 16, "vocab": 64}
TINY_MLP = {"arch": "mlp", "width": 32, "depth": 2, "out_dim": 4}


def run(cfg: dict[str, Any], tmp_path: Path, model: str, strategy: str, ws: int, **job_changes: Any) -> dict:
    """Run one job of ``cfg`` (with ``job_changes`` applied to it) and return its record."""
    job, reason = make_job(cfg, model, "cpu-local", strategy, ws, 0)
    job = job.replace(**copy.deepcopy(job_changes))
    record, _ = run_job(job, tmp_path / f"{job.id}.json", reason)
    return record


def make_test_job(strategy: str = "ddp", world_size: int = 2, **changes: Any) -> Job:
    """A job built by hand (no study file): tiny gpt, cpu-local, ``changes`` applied."""
    fields = {
        "study": "s",
        "model": "m",
        "model_cfg": dict(TINY_GPT),
        "hardware": "h",
        "hardware_cfg": CPU_LOCAL,
        "strategy": strategy,
        "plan": resolve_plan(strategy, world_size),
        "world_size": world_size,
        "global_batch": 8,
        "seq_len": TINY_GPT["seq_len"],
        "dtype": "fp32",
        "steps": 3,
        "warmup_steps": 0,
        "seed": 0,
        "repeat": 0,
        "threads_per_rank": 1,
        "scaling": "strong",
        "timeout_s": 60.0,
        "optimizer": {"lr": 1e-3},
        "loss_tolerance": 1e-5,
    }
    return Job(**fields).replace(**changes)
