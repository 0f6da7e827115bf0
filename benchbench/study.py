"""Study expansion: a validated config becomes the list of jobs to run and the list of
combinations dropped, each with its reason. The CLI (``benchbench matrix``) and the Snakefile
both call :func:`expand`, so there is one copy of the logic."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbench.config import load_hardware
from benchbench.models import ARCHITECTURES
from benchbench.strategies import infeasible_reason, resolve_plan

#: Where a job's record lives, relative to the results root; Snakemake's bench rule uses it too.
RECORD_PATTERN = "{study}/raw/{model}/{hardware}/{strategy}/ws{world_size}-r{repeat}.json"


@dataclass(frozen=True)
class Dropped:
    """A combination the study cannot run, and why."""

    model: str
    hardware: str
    strategy: str
    world_size: int
    reason: str

    def label(self) -> str:
        return f"{self.model} {self.hardware} {self.strategy} ws{self.world_size}"


def job_id(spec: dict[str, Any]) -> str:
    """Stable, readable id of a job spec."""
    return f"{spec['model']}__{spec['hardware']}__{spec['strategy']}__ws{spec['world_size']}__r{spec['repeat']}"


def record_path(spec: dict[str, Any], results: str | Path = "results") -> Path:
    """The record file of a job spec under ``results``."""
    return Path(results) / RECORD_PATTERN.format(**spec)


def make_spec(
    cfg: dict[str, Any], model: str, hardware: str, strategy: str, world_size: int, repeat: int
) -> tuple[dict[str, Any], str | None]:
    """The full job spec of one combination, and why it is infeasible (``None`` if it is not)."""
    model_cfg = cfg["models"][model]
    plan = resolve_plan(strategy, world_size, cfg["strategy_defs"])
    batch = int(model_cfg.get("batch_size", cfg["batch_size"]))
    global_batch = batch if cfg["scaling"] == "strong" else batch * max(plan.dp, 1)
    arch = ARCHITECTURES[model_cfg["arch"]]
    spec = {
        "study": cfg["study"],
        "model": model,
        "model_cfg": {k: v for k, v in model_cfg.items() if k != "batch_size"},
        "hardware": hardware,
        "hardware_cfg": load_hardware(hardware),
        "strategy": strategy,
        "plan": plan.to_dict(),
        "world_size": world_size,
        "dp": plan.dp,
        "tp": plan.tp,
        "pp": plan.pp,
        "micro_batches": plan.micro_batches,
        "global_batch": global_batch,
        "seq_len": int(model_cfg["seq_len"]) if arch.sequence else None,
        "dtype": cfg["dtype"],
        "steps": cfg["steps"],
        "warmup_steps": cfg["warmup_steps"],
        "seed": cfg["seed"],
        "repeat": repeat,
        "threads_per_rank": cfg["threads_per_rank"],
        "scaling": cfg["scaling"],
        "timeout_s": cfg["timeout_s"],
        "optimizer": cfg["optimizer"],
        "loss_tolerance": cfg["loss_tolerance"],
    }
    spec["id"] = job_id(spec)
    reason = infeasible_reason(plan, model_cfg, world_size, global_batch)
    return spec, reason


def expand(cfg: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Dropped]]:
    """All job specs of a validated study config, and the dropped combinations with reasons.

    Order: model, hardware, strategy, world size, repeat (the order ``matrix`` prints)."""
    jobs: list[dict[str, Any]] = []
    dropped: list[Dropped] = []
    for model, hardware, strategy, ws in itertools.product(
        cfg["models"], cfg["hardware"], cfg["strategies"], sorted(set(cfg["world_sizes"]))
    ):
        specs = [make_spec(cfg, model, hardware, strategy, ws, r) for r in range(cfg["repeats"])]
        reason = specs[0][1]
        if reason is not None:
            dropped.append(Dropped(model, hardware, strategy, ws, reason))
        else:
            jobs.extend(spec for spec, _ in specs)
    return jobs, dropped
