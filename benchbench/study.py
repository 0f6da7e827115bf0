"""Study expansion: a validated config becomes the list of jobs to run and the list of
combinations dropped, each with its reason. The CLI (``benchbench matrix``) and the Snakefile
both call :func:`expand`, so there is one copy of the logic."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from benchbench.costmodel.calibrate import CalibrationSpec, spec_for_jobs
from benchbench.costmodel.calibration import from_spec, read_calibration
from benchbench.costmodel.memory import memory_estimate, rank_memory_limit
from benchbench.costmodel.model_parallel import cp_as_data_parallel
from benchbench.costmodel.recommend import calibration_path, recommend
from benchbench.spec.config import PREDICTED_TOP, ConfigError
from benchbench.spec.hardware import load_hardware
from benchbench.spec.job import Dropped, Job, make_job


def memory_reason(job: Job) -> str | None:
    """Why the job would not fit: the cost model's per-rank memory
    (:func:`benchbench.costmodel.memory.memory_estimate`: model state as the plan shards it + the
    saved activations held at the peak + DDP's buckets) above what one rank may use
    (:func:`benchbench.costmodel.memory.rank_memory_limit`: a GPU's ``memory_gb``; on CPU profiles
    the host's memory shared by its ranks) — else ``None``. Expansion loads no torch for it."""
    limit = rank_memory_limit(job)
    if limit is None:
        return None
    mem = memory_estimate(cp_as_data_parallel(job))
    if mem.total_bytes <= limit.bytes:
        return None
    note = f"; {mem.note}" if mem.note else ""
    return (
        f"memory: the cost model predicts {mem.total_bytes / 1e9:.1f} GB per rank (model state "
        f"{mem.model_state_bytes / 1e9:.1f} + activations {(mem.activation_bytes or 0) / 1e9:.1f}{note}) "
        f"> {limit.source}"
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
    batch there (name -> strategy_defs entry, ``None`` for a preset; exact plans only unless the
    study's ``allow_lossy``: :func:`~benchbench.costmodel.recommend.recommend`), predicted with
    ``results/<study>/calibration/<hardware>.json`` when it exists, else the profile's specs;
    :class:`~benchbench.spec.config.ConfigError` naming ``key`` and what to run when neither exists."""
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
    rec = recommend(plain, model, hardware, world_size, cals[hardware], gb, allow_lossy=bool(cfg.get("allow_lossy")))
    return {c.name: c.spec for c in rec.ranked[:k]}


def expand(cfg: dict[str, Any]) -> tuple[list[Job], list[Dropped]]:
    """All jobs of a validated study config, and the dropped combinations with reasons (plan
    rules, the device, and the predicted memory: :func:`memory_reason`).

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


def calibration_spec(cfg: dict[str, Any], hardware: str) -> CalibrationSpec:
    """What to calibrate for ``hardware`` so that the cost model can predict every job of the
    validated study ``cfg`` on it: its jobs there (:func:`expand`) made into a spec by
    :func:`~benchbench.costmodel.calibrate.spec_for_jobs` (torch-free; docs/METRICS.md,
    "Calibration"). A ``predicted-top-K`` entry needs a calibration to expand, so here it stands
    for ddp and every group size a plan may use (the divisors > 1 of each world size): the spec,
    and so calibrating, never depends on a calibration. Raises ``ValueError`` when the study runs
    no job on ``hardware``."""
    top = [s for s in cfg["strategies"] if PREDICTED_TOP.fullmatch(s) and s not in cfg["strategy_defs"]]
    plain = [s for s in cfg["strategies"] if s not in top] + (["ddp"] if top else [])
    jobs = [j for j in expand({**cfg, "strategies": list(dict.fromkeys(plain))})[0] if j.hardware == hardware]
    return spec_for_jobs(cfg, hardware, jobs, every_divisor=bool(top))


def expand_runnable(cfg: dict[str, Any], what: str = "study config") -> tuple[list[Job], list[Dropped]]:
    """:func:`expand`, refusing a study that would run no job at all (every combination dropped):
    it is refused before anything runs, with each combination's reason, rather than ending in an
    empty report."""
    jobs, dropped = expand(cfg)
    if not jobs:
        reasons = "\n  ".join(f"{d.label()}: {d.reason}" for d in dropped)
        raise ConfigError(
            f"invalid {what}: no job to run; every combination of models x hardware x strategies x world_sizes "
            f"is dropped:\n  {reasons}\nallowed: a study with at least one feasible combination"
        )
    return jobs, dropped
