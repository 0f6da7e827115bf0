"""Study expansion: a validated config becomes the list of jobs to run and the list of
combinations dropped, each with its reason. The CLI (``benchbench matrix``) and the Snakefile
both call :func:`expand`, so there is one copy of the logic."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

from benchbench.hardware import load_hardware
from benchbench.job import Job
from benchbench.strategies.plan import infeasible_reason, resolve_plan


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seq_len(model_cfg: dict[str, Any]) -> int | None:
    """Tokens per sample of a sequence model, else ``None``. In a validated config only the sequence
    architectures have a ``seq_len`` (config schema; ``benchbench.models.ARCHITECTURES``' ``sequence``
    flag, tested), so expanding a study needs no torch import (2-3 s in every Snakemake run)."""
    return int(model_cfg["seq_len"]) if "seq_len" in model_cfg else None


def make_job(
    cfg: dict[str, Any], model: str, hardware: str, strategy: str, world_size: int, repeat: int
) -> tuple[Job, str | None]:
    """The job of one combination of a validated study config, and why it is infeasible
    (``None`` if it is not). Raises ``KeyError`` for an unknown strategy."""
    model_cfg = cfg["models"][model]
    plan = resolve_plan(strategy, world_size, cfg["strategy_defs"])
    batch = int(model_cfg.get("batch_size", cfg["batch_size"]))
    global_batch = batch if cfg["scaling"] == "strong" else batch * max(plan.dp, 1)
    job = Job(
        study=cfg["study"],
        model=model,
        model_cfg={k: v for k, v in model_cfg.items() if k != "batch_size"},
        hardware=hardware,
        hardware_cfg=load_hardware(hardware),
        strategy=strategy,
        plan=plan,
        world_size=world_size,
        global_batch=global_batch,
        seq_len=_seq_len(model_cfg),
        dtype=cfg["dtype"],
        steps=cfg["steps"],
        warmup_steps=cfg["warmup_steps"],
        seed=cfg["seed"],
        repeat=repeat,
        threads_per_rank=cfg["threads_per_rank"],
        scaling=cfg["scaling"],
        timeout_s=float(cfg["timeout_s"]),
        optimizer=dict(cfg["optimizer"]),
        loss_tolerance=float(cfg["loss_tolerance"]),
    )
    return job, job_infeasible_reason(job)


def job_infeasible_reason(job: Job) -> str | None:
    """Why ``job``'s plan cannot run its model at its world size and batch, or cannot be timed in
    steady state with the job's warm-up (``None``: it can)."""
    reason = infeasible_reason(job.plan, job.model_cfg, job.world_size, job.global_batch)
    if reason is None and job.plan.compression == "powersgd" and job.warmup_steps <= job.plan.powersgd_warmup:
        reason = (
            f"warmup_steps = {job.warmup_steps} <= powersgd_warmup = {job.plan.powersgd_warmup}: the first timed "
            "step would be PowerSGD's plain all-reduce warm-up or its first compressed step (which allocates "
            "its factor matrices and error buffers), not a steady compressed step"
        )
    return reason


def expand(cfg: dict[str, Any]) -> tuple[list[Job], list[Dropped]]:
    """All jobs of a validated study config, and the dropped combinations with reasons.

    Order: model, hardware, strategy, world size, repeat (the order ``matrix`` prints)."""
    jobs: list[Job] = []
    dropped: list[Dropped] = []
    for model, hardware, strategy, ws in itertools.product(
        cfg["models"], cfg["hardware"], cfg["strategies"], sorted(set(cfg["world_sizes"]))
    ):
        first, reason = make_job(cfg, model, hardware, strategy, ws, 0)
        if reason is not None:
            dropped.append(Dropped(model, hardware, strategy, ws, reason))
        else:
            jobs.extend(first.replace(repeat=r) for r in range(cfg["repeats"]))
    return jobs, dropped


def expand_runnable(cfg: dict[str, Any], what: str = "study config") -> tuple[list[Job], list[Dropped]]:
    """:func:`expand`, refusing a study that would run no job at all (every combination dropped):
    it is refused before anything runs, with each combination's reason, rather than ending in an
    empty report."""
    jobs, dropped = expand(cfg)
    if not jobs:
        from benchbench.config import ConfigError

        reasons = "\n  ".join(f"{d.label()}: {d.reason}" for d in dropped)
        raise ConfigError(
            f"invalid {what}: no job to run; every combination of models x hardware x strategies x world_sizes "
            f"is dropped:\n  {reasons}\nallowed: a study with at least one feasible combination"
        )
    return jobs, dropped
