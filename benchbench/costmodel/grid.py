"""Many jobs at once: the predicted grid of a study — its models × hardware × strategies (the
study's, or every candidate plan of :mod:`~benchbench.costmodel.plan_space`) × world sizes, up to 4,096
ranks and beyond — each job made as the study makes its own (:func:`~benchbench.spec.job.make_job`)
and predicted by :func:`~benchbench.costmodel.predict.predict_job`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchbench.costmodel.calibration import Calibration
from benchbench.costmodel.plan_space import candidates
from benchbench.costmodel.predict import Prediction, predict_job
from benchbench.spec.hardware import load_hardware
from benchbench.spec.job import Job, make_job


def scaled_global_batch(cfg: dict[str, Any], model: str, world_size: int) -> int | None:
    """The global batch beyond a study's world sizes: the model's batch_size × world size (weak
    scaling from one rank's batch); ``None`` inside the study's world sizes (the study's own rule,
    as :func:`~benchbench.spec.job.make_job` applies it)."""
    if world_size in cfg["world_sizes"]:
        return None
    return int(cfg["models"][model].get("batch_size", cfg["batch_size"])) * world_size


def config_jobs(
    cfg: dict[str, Any], model: str, hardware: str, world_size: int, plans: str, global_batch: int | None
) -> list[Job]:
    """The jobs of one model × hardware × world size: the study's strategies (``plans="study"``),
    or those and every candidate of :func:`~benchbench.costmodel.plan_space.candidates` (``"all"``)."""
    names = {s: None for s in cfg["strategies"] if s in cfg["strategy_defs"] or not s.startswith("predicted-top-")}
    defs = dict(cfg["strategy_defs"])
    if plans == "all":
        gb = global_batch or make_job(cfg, model, hardware, "ddp", world_size, 0)[0].global_batch
        for name, spec in candidates(cfg["models"][model], load_hardware(hardware), world_size, gb).items():
            names.setdefault(name, None)
            defs.update({name: spec} if spec else {})
    full = {**cfg, "strategy_defs": defs}
    jobs = []
    for name in names:
        job = make_job(full, model, hardware, name, world_size, 0)[0]
        jobs.append(job.replace(global_batch=global_batch) if global_batch else job)
    return jobs


def predict_configs(
    study_cfg: dict[str, Any],
    cals: dict[str, Calibration],
    world_sizes: list[int] | None = None,
    global_batch_rule: Callable[[dict[str, Any], str, int], int | None] = scaled_global_batch,
    plans: str = "study",
) -> list[Prediction]:
    """Predictions for every model of the study × hardware (the keys of ``cals``: the study's, or
    all shipped profiles, as the caller chose) × strategy (``plans``: the study's, or ``"all"``:
    also every preset and generated hybrid) × world size (the study's, or ``world_sizes``: up to
    4,096 and beyond), infeasible ones included with their reason. ``global_batch_rule(cfg,
    model, world_size)`` gives the global batch (``None``: the study's rule); by default the
    model's batch_size × world size beyond the study's world sizes."""
    out = []
    for model in study_cfg["models"]:
        for hardware, cal in cals.items():
            for ws in sorted(set(world_sizes or study_cfg["world_sizes"])):
                gb = global_batch_rule(study_cfg, model, ws)
                out += [predict_job(job, cal) for job in config_jobs(study_cfg, model, hardware, ws, plans, gb)]
    return out
