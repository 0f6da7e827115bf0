"""Study expansion: a validated config becomes the list of jobs to run and the list of
combinations dropped, each with its reason. The CLI (``benchbench matrix``) and the Snakefile
both call :func:`expand`, so there is one copy of the logic."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from benchbench.spec.config import PREDICTED_TOP
from benchbench.spec.gpu_features import device_reason
from benchbench.spec.hardware import load_hardware
from benchbench.spec.job import Job
from benchbench.spec.plan import infeasible_reason, resolve_plan


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
    architectures have a ``seq_len`` (config schema; ``benchbench.models.registry.ARCHITECTURES``' ``sequence``
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
    """Why ``job``'s plan cannot run its model at its world size and batch, its device cannot run
    the plan's GPU-only steps (:func:`~benchbench.spec.gpu_features.device_reason`), or it
    cannot be timed in steady state with the job's warm-up (``None``: it can)."""
    reason = infeasible_reason(job.plan, job.model_cfg, job.world_size, job.global_batch)
    reason = reason or device_reason(job.plan, job.hardware_cfg)
    if reason is None and job.plan.compression == "powersgd" and job.warmup_steps <= job.plan.powersgd_warmup:
        reason = (
            f"warmup_steps = {job.warmup_steps} <= powersgd_warmup = {job.plan.powersgd_warmup}: the first timed "
            "step would be PowerSGD's plain all-reduce warm-up or its first compressed step (which allocates "
            "its factor matrices and error buffers), not a steady compressed step"
        )
    return reason


def memory_reason(job: Job) -> str | None:
    """On a GPU profile that gives ``memory_gb``: why the job would not fit one device — the cost
    model's per-rank memory (:func:`benchbench.costmodel.predict.memory`: model state as the plan
    shards it + saved activations, bf16 jobs at the fp32 upper bound) above it — else ``None``.
    CPU profiles are not checked (and expansion imports no torch for them)."""
    hw = job.hardware_cfg
    if hw.device != "cuda" or not hw.memory_gb:
        return None
    from benchbench.costmodel.predict import cp_as_data_parallel, memory

    state, act, mem, note = memory(cp_as_data_parallel(job))
    if mem <= hw.memory_gb * 1e9:
        return None
    return (
        f"memory: the cost model predicts {mem / 1e9:.1f} GB per rank (model state {state / 1e9:.1f} + "
        f"activations {(act or 0) / 1e9:.1f}{'; ' + note if note else ''}) > memory_gb = {hw.memory_gb:g}"
    )


def _combinations(cfg: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str, str, str, int]]:
    """(config, model, hardware, strategy, world size) in expansion order. A ``predicted-top-K``
    entry of ``strategies`` (not itself a strategy_defs name) becomes, per model x hardware x
    world size, the cost model's K best predicted plans there (:func:`predicted_top`), with their
    strategy_defs added to the config the jobs are made from."""
    sizes = sorted(set(cfg["world_sizes"]))
    predicted = any(PREDICTED_TOP.fullmatch(s) and s not in cfg["strategy_defs"] for s in cfg["strategies"])
    if not predicted:
        for model, hardware, strategy, ws in itertools.product(
            cfg["models"], cfg["hardware"], cfg["strategies"], sizes
        ):
            yield cfg, model, hardware, strategy, ws
        return
    cals: dict[str, Any] = {}
    for model, hardware, ws in itertools.product(cfg["models"], cfg["hardware"], sizes):
        names, defs = [], dict(cfg["strategy_defs"])
        for i, s in enumerate(cfg["strategies"]):
            top = PREDICTED_TOP.fullmatch(s) and s not in defs
            chosen = predicted_top(cfg, model, hardware, ws, f"strategies.{i}", cals) if top else {s: None}
            names += [n for n in chosen if n not in names]
            defs.update({n: spec for n, spec in chosen.items() if spec})
        full = {**cfg, "strategy_defs": defs}
        for strategy in names:
            yield full, model, hardware, strategy, ws


def predicted_top(
    cfg: dict[str, Any], model: str, hardware: str, world_size: int, key: str, cals: dict[str, Any]
) -> dict[str, dict[str, Any] | None]:
    """For the entry ``predicted-top-K`` at ``key`` (``strategies.<i>``): the K best predicted
    feasible plans of ``model`` on ``hardware`` at ``world_size`` ranks and the study's global
    batch there (name -> strategy_defs entry, ``None`` for a preset), predicted with
    ``results/<study>/calibration/<hardware>.json`` when it exists, else the profile's specs;
    :class:`~benchbench.spec.config.ConfigError` naming ``key`` and what to run when neither exists.
    Imports the cost model (and torch, 2-3 s) only for a study that asks for it."""
    from benchbench.costmodel.calibration import from_spec, read_calibration
    from benchbench.costmodel.recommend import calibration_path, recommend
    from benchbench.spec.config import ConfigError

    entry = cfg["strategies"][int(key.split(".")[1])]
    k = int(PREDICTED_TOP.fullmatch(entry).group(1))
    path = calibration_path(cfg["study"], hardware)
    if hardware not in cals:
        try:
            cals[hardware] = read_calibration(path)
        except ValueError:  # none, or a failed one: the specs stand in where they can
            try:
                cals[hardware] = from_spec(hardware, load_hardware(hardware))
            except ValueError as e:
                raise ConfigError(
                    f"invalid study config:\n  {key}: {entry!r} needs a calibration of hardware {hardware!r}: {path} "
                    f"does not exist or cannot be read, and the profile's specs cannot stand in ({e}); run "
                    f"`benchbench calibrate --configfile <this study's file> --hardware {hardware}` first"
                ) from None
    plain = {**cfg, "strategies": [s for s in cfg["strategies"] if not PREDICTED_TOP.fullmatch(s)] or ["ddp"]}
    gb = make_job(plain, model, hardware, "ddp", world_size, 0)[0].global_batch
    rec = recommend(plain, model, hardware, world_size, cals[hardware], gb)
    return {c.name: c.spec for c in rec.ranked[:k]}


def expand(cfg: dict[str, Any]) -> tuple[list[Job], list[Dropped]]:
    """All jobs of a validated study config, and the dropped combinations with reasons (plan
    rules, the device, and on GPU profiles the predicted memory: :func:`memory_reason`).

    Order: model, hardware, strategy, world size, repeat (the order ``matrix`` prints); with a
    ``predicted-top-K`` entry: model, hardware, world size, strategy (:func:`_combinations`)."""
    jobs: list[Job] = []
    dropped: list[Dropped] = []
    for full, model, hardware, strategy, ws in _combinations(cfg):
        first, reason = make_job(full, model, hardware, strategy, ws, 0)
        reason = reason or memory_reason(first)
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
        from benchbench.spec.config import ConfigError

        reasons = "\n  ".join(f"{d.label()}: {d.reason}" for d in dropped)
        raise ConfigError(
            f"invalid {what}: no job to run; every combination of models x hardware x strategies x world_sizes "
            f"is dropped:\n  {reasons}\nallowed: a study with at least one feasible combination"
        )
    return jobs, dropped
