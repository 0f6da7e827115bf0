"""Predict a job's step time, throughput, memory and bubble from a calibration (docs/METRICS.md,
"Predictions").

A step on the busiest rank = its compute (the calibration's measured forward, backward and
optimizer times of the model at the rank's micro-batch, scaled by the share of the FLOPs and
parameters the rank holds: :mod:`~benchbench.costmodel.compute`) + the communication not hidden
behind that compute, a pipeline stretched by its bubble; on a CPU whose cores the ranks
oversubscribe, everything slows by ranks × threads / cores. Each strategy family has one function,
next to the plan it models, its formula and source in the docstring
(:mod:`~benchbench.costmodel.data_parallel`, :mod:`~benchbench.costmodel.model_parallel`); here
:func:`predict_job` composes them per mesh dimension (hybrids: tp inside each micro-batch, pp
around, dp once per step) with the memory of :mod:`~benchbench.costmodel.memory`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from benchbench.costmodel.calibration import Calibration
from benchbench.costmodel.compute import float8_factor, oversubscription, phases, recompute_share, stream_bytes
from benchbench.costmodel.context import Ctx, Op, Part, RankStep, fmt_s
from benchbench.costmodel.data_parallel import DP_FAMILY, dp_flavour, optimizer_seconds
from benchbench.costmodel.memory import MemoryEstimate, memory_estimate, rank_memory_limit
from benchbench.costmodel.model_parallel import (
    activation_elems,
    async_tp_part,
    cp_as_data_parallel,
    p2p_part,
    pipeline_makespan,
    tp_part,
    with_ring_attention,
)
from benchbench.costmodel.tensors import flop_share, stage_tensors
from benchbench.spec.job import Job, job_infeasible_reason
from benchbench.spec.schedules import stage_ids


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """The cost model's figures for one job (one configuration: model, hardware, plan, world size)."""

    model: str
    hardware: str
    strategy: str
    world_size: int
    dp: int
    tp: int
    pp: int
    global_batch: int
    source: str  # the calibration's: "measured" | "from spec"
    extrapolated: bool  # beyond what was calibrated: a larger group, or a batch outside the measured points
    compute_s: float  # the busiest rank's compute of one step (forward, backward, optimizer)
    comm_s: float  # every collective of one step on that rank, α-β time, summed
    exposed_comm_s: float  # the part of comm_s not hidden behind compute
    bubble_fraction: float | None  # pipeline plans: idle share of the step
    step_time_s: float
    samples_per_s: float
    model_state_bytes: float  # benchbench.costmodel.memory.model_state_estimate
    activation_bytes: float | None  # benchbench.costmodel.memory.activation_estimate
    memory_bytes: float  # model state + activations of the rank holding the most
    memory_limit_bytes: float | None  # what one rank may use (costmodel.memory.rank_memory_limit), bytes
    fits: bool | None  # memory_bytes <= memory_limit_bytes; None where the profile gives no memory
    infeasible: str | None  # why the plan cannot run (plan rules or memory), else None
    terms: str  # how step_time_s was composed, for people

    def to_dict(self) -> dict[str, Any]:
        """The prediction as a flat dict, in field order (a row of ``predictions.csv``)."""
        return asdict(self)


# ----------------------------------------------------------------------------- one rank's step


def flat_step(ctx: Ctx) -> RankStep:
    """Without a pipeline: k = accum_steps micro-steps of compute at batch local / k (forward and
    backward / tp for split models, by FLOP share; backward plus activation checkpointing's
    recompute, :func:`recompute_share`), tensor-parallel collectives in each, the
    data-parallel communication once (Li et al. 2020: accumulation under no_sync), the optimizer
    once: step = k·(F + B + TP) + optimizer + exposed dp."""
    job = ctx.job
    k = job.plan.accum_steps
    f, b, o = phases(ctx, job.local_batch / k)
    share = flop_share(job.model_cfg, [0], 1, job.plan.tp) * float8_factor(ctx)
    f, b = f * share, b * share + f * recompute_share(job, [0], 1)  # checkpointing: backward recomputes
    tensors = stage_tensors(job.model_cfg, 0, 1, job.plan.tp)
    opt = optimizer_seconds(job, o, tensors)
    tp = async_tp_part(ctx, tp_part(ctx, [0], 1, job.local_batch / k), f + b)
    dp = DP_FAMILY[dp_flavour(job.plan)](ctx, tensors, b, k * (f + b), k)
    compute = k * (f + b) + opt + dp.extra_compute_s
    exposed = k * tp.exposed_s + dp.exposed_s
    terms = [
        f"compute {fmt_s(compute)} ({k}× (F {fmt_s(f)} + B {fmt_s(b)}) + opt {fmt_s(opt)}"
        + (f" + dp own {fmt_s(dp.extra_compute_s)}" if dp.extra_compute_s else "")
        + ")"
    ]
    terms += [f"{k}× {tp.text}"] if tp.ops else []
    terms += [f"{dp.text}, exposed {fmt_s(dp.exposed_s)}"] if dp.ops else []
    ops = [Op(o_.kind, o_.dim, o_.n, o_.calls * k, o_.payload * k) for o_ in tp.ops] + dp.ops
    return RankStep(compute, k * tp.comm_s + dp.comm_s, exposed, compute + exposed, None, ops, terms)


@dataclass(frozen=True)
class PipelineRank:
    """One pipeline rank's share of a step (:func:`pipeline_rank`)."""

    per_mb_s: float  # T_r: forward + backward of its stages per micro-batch, recompute and exposed tp included
    transfer_s: float  # X_r: its exposed sends per micro-batch
    tail_s: float  # after its last backward: optimizer + exposed dp + dp's own compute
    compute_s: float  # m micro-batches' forward + backward, and the optimizer
    comm_s: float  # m micro-batches' tp and pp communication, and dp's
    tp: Part
    p2p: Part
    dp: Part


def pipeline_rank(ctx: Ctx, r: int, phase_s: tuple[float, float, float], owners: dict[int, int]) -> PipelineRank:
    """Pipeline rank ``r``'s step given the whole model's forward, backward and optimizer seconds
    ``phase_s`` per micro-batch: T_r = (F + B)·share_r + F·recompute_r (:func:`recompute_share`)
    + TP_r per micro-batch, X_r its sends, and after its last backward its data-parallel
    communication (once) and optimizer."""
    job, plan = ctx.job, ctx.job.plan
    p, m, v = plan.pp, plan.micro_batches, plan.virtual_stages
    n_stages, batch = p * v, job.local_batch / m
    f, b, o = phase_s
    stages = stage_ids(plan.schedule, r, p, v)
    share = flop_share(job.model_cfg, stages, n_stages, plan.tp)
    fb = (f + b) * share + f * recompute_share(job, stages, n_stages)  # per micro-batch, recompute included
    tensors = [t for s in stages for t in stage_tensors(job.model_cfg, s, n_stages, plan.tp)]
    tp = async_tp_part(ctx, tp_part(ctx, stages, n_stages, batch), fb)
    x = p2p_part(ctx, stages, owners, batch)
    dp = DP_FAMILY[dp_flavour(job.plan)](ctx, tensors, fb - f * share, m * fb, m)
    opt = optimizer_seconds(job, o, tensors)
    return PipelineRank(
        per_mb_s=fb + tp.exposed_s,
        transfer_s=x.exposed_s,
        tail_s=opt + dp.exposed_s + dp.extra_compute_s,
        compute_s=m * fb + opt,
        comm_s=m * (tp.comm_s + x.comm_s) + dp.comm_s,
        tp=tp,
        p2p=x,
        dp=dp,
    )


def pipeline_step(ctx: Ctx) -> RankStep:
    """With a pipeline: per pipeline rank r (:func:`pipeline_rank`) T_r per micro-batch of
    b_local / m samples, X_r its sends; the schedule's makespan (:func:`pipeline_makespan`); then
    each rank's data-parallel communication (once, after its last backward) and optimizer:
    step = makespan + max_r(exposed dp_r + optimizer_r). Bubble = 1 − mean_r(m·T_r) / makespan."""
    job, plan = ctx.job, ctx.job.plan
    p, m, v = plan.pp, plan.micro_batches, plan.virtual_stages
    batch = job.local_batch / m
    f, b, o = phases(ctx, batch)
    f, b = f * float8_factor(ctx), b * float8_factor(ctx)
    owners = {s: r for r in range(p) for s in stage_ids(plan.schedule, r, p, v)}
    ranks = [pipeline_rank(ctx, r, (f, b, o), owners) for r in range(p)]
    per_mb, transfer = [q.per_mb_s for q in ranks], [q.transfer_s for q in ranks]
    hop = ctx.time("send", "pp", p, batch * activation_elems(job.model_cfg) * stream_bytes(job))
    makespan, how = pipeline_makespan(ctx, per_mb, transfer, hop)
    bubble = max(0.0, 1 - m * sum(per_mb) / p / makespan)
    busiest = max(range(p), key=lambda r: m * per_mb[r] + ranks[r].tail_s)
    mine = ranks[busiest]
    step = makespan + max(q.tail_s for q in ranks)
    exposed = max(0.0, step - mine.compute_s)  # everything on the busiest rank that is not its compute
    ops = [Op(q.kind, q.dim, q.n, q.calls * m, q.payload * m) for q in mine.tp.ops + mine.p2p.ops] + mine.dp.ops
    terms = [
        f"pipeline p={p} m={m} v={v}: makespan {fmt_s(makespan)} ({how}), bubble {bubble:.3f}",
        f"busiest rank {busiest}: compute {fmt_s(mine.compute_s)} (per micro-batch F+B {fmt_s(f + b)} × share)",
        *([f"{m}× {mine.tp.text}"] if mine.tp.ops else []),
        f"{m}× {mine.p2p.text}",
        *([f"{mine.dp.text}, exposed {fmt_s(mine.dp.exposed_s)}"] if mine.dp.ops else []),
    ]
    return RankStep(mine.compute_s, mine.comm_s, exposed, step, bubble, ops, terms)


def comm_rows(job: Job, cal: Calibration) -> list[dict[str, Any]]:
    """The analytic communication of one step as the record's ``comm`` rows: per (kind, dim) the
    row of the rank moving the most payload (``merge_ranks`` in rank/measure/comm_stats.py), calls
    and payload (nccl-tests' sizes) — what a test compares with measured records."""
    ctx = Ctx(job, cal)
    per_rank = [flat_step(ctx).ops] if job.plan.pp <= 1 else [rank_ops(ctx, r) for r in range(job.plan.pp)]
    rows: dict[tuple[str, str], Op] = {}
    for ops in per_rank:
        mine: dict[tuple[str, str], Op] = {}
        for op in ops:
            was = mine.get((op.kind, op.dim), Op(op.kind, op.dim, op.n, 0, 0.0))
            mine[(op.kind, op.dim)] = Op(op.kind, op.dim, op.n, was.calls + op.calls, was.payload + op.payload)
        for key, op in mine.items():
            if key not in rows or op.payload > rows[key].payload:
                rows[key] = op
    return [
        {"kind": o.kind, "dim": o.dim, "group_size": o.n, "calls": o.calls, "payload_bytes": o.payload}
        for o in sorted(rows.values(), key=lambda o: (o.dim, o.kind))
    ]


def rank_ops(ctx: Ctx, r: int) -> list[Op]:
    """Pipeline rank ``r``'s collective operations of one step (m micro-batches, dp once)."""
    job, plan = ctx.job, ctx.job.plan
    p, m, v = plan.pp, plan.micro_batches, plan.virtual_stages
    batch, n_stages = job.local_batch / m, p * v
    owners = {s: q for q in range(p) for s in stage_ids(plan.schedule, q, p, v)}
    stages = stage_ids(plan.schedule, r, p, v)
    tensors = [t for s in stages for t in stage_tensors(job.model_cfg, s, n_stages, plan.tp)]
    tp, x = tp_part(ctx, stages, n_stages, batch), p2p_part(ctx, stages, owners, batch)
    dp = DP_FAMILY[dp_flavour(job.plan)](ctx, tensors, 0.0, 0.0, m)
    return [Op(q.kind, q.dim, q.n, q.calls * m, q.payload * m) for q in tp.ops + x.ops] + dp.ops


# -------------------------------------------------------------------------------- the job


def memory_limit_bytes(job: Job) -> float | None:
    """What one rank may use (:func:`~benchbench.costmodel.memory.rank_memory_limit`), in bytes,
    where the profile gives ``memory_gb``; ``None`` where it gives none — a CPU profile without it
    is checked against this host's RAM when a study is expanded (``study.memory_reason``), not in
    predictions, which extrapolate to rank counts no one host holds."""
    limit = rank_memory_limit(job) if job.hardware_cfg.memory_gb else None
    return limit.bytes if limit else None


def memory_infeasible(mem: MemoryEstimate, limit: float) -> str:
    """Why a plan whose per-rank memory ``mem`` exceeds ``limit`` bytes cannot run."""
    return (
        f"memory: {mem.total_bytes / 1e9:.1f} GB per rank (model state {mem.model_state_bytes / 1e9:.1f} + "
        f"activations {(mem.activation_bytes or 0) / 1e9:.1f}) > {limit / 1e9:.0f} GB"
    )


def job_fields(job: Job, cal: Calibration) -> dict[str, Any]:
    """The :class:`Prediction` fields that name the configuration and the calibration's source."""
    plan = job.plan
    return {
        "model": job.model,
        "hardware": job.hardware,
        "strategy": job.strategy,
        "world_size": job.world_size,
        "dp": plan.dp,
        "tp": plan.tp,
        "pp": plan.pp,
        "global_batch": job.global_batch,
        "source": cal.source,
    }


def infeasible_prediction(job: Job, cal: Calibration, reason: str) -> Prediction:
    """The prediction of a plan the rules refuse: its ``reason`` and no figures (NaN)."""
    nan = math.nan
    return Prediction(
        **job_fields(job, cal),
        extrapolated=False,
        compute_s=nan,
        comm_s=nan,
        exposed_comm_s=nan,
        bubble_fraction=None,
        step_time_s=nan,
        samples_per_s=nan,
        model_state_bytes=nan,
        activation_bytes=None,
        memory_bytes=nan,
        memory_limit_bytes=memory_limit_bytes(job),
        fits=None,
        infeasible=reason,
        terms="",
    )


def busiest_step(job: Job, ctx: Ctx) -> RankStep:
    """The busiest rank's step of ``job`` (:func:`flat_step` or :func:`pipeline_step` of
    ``ctx``'s job, :func:`~benchbench.costmodel.model_parallel.cp_as_data_parallel`'s view of it),
    with context parallel's ring attention added where the plan has a cp dimension."""
    if job.plan.compile:  # the calibration times eager blocks; no measured speed-up to apply
        ctx.note("compile: compute as eager (uncalibrated for compiled blocks); compile time not in the step")
    step = pipeline_step(ctx) if job.plan.pp > 1 else flat_step(ctx)
    if job.plan.cp > 1:
        step = with_ring_attention(Ctx(job, ctx.cal), step, ctx)
    return step


def predict_job(job: Job, cal: Calibration) -> Prediction:
    """The cost model's prediction of ``job`` on the hardware ``cal`` describes: the busiest
    rank's step (:func:`busiest_step`) × the CPU oversubscription (:func:`oversubscription`),
    memory (:func:`~benchbench.costmodel.memory.memory_estimate`) against the profile's
    ``memory_gb``; a plan the rules refuse (:func:`~benchbench.spec.job.job_infeasible_reason`)
    gets its reason and no figures."""
    reason = job_infeasible_reason(job)
    if reason:
        return infeasible_prediction(job, cal, reason)
    ctx = Ctx(cp_as_data_parallel(job), cal)
    step = busiest_step(job, ctx)
    slow = oversubscription(job, cal)
    mem = memory_estimate(ctx.job)
    limit = memory_limit_bytes(job)
    fits = None if limit is None else mem.total_bytes <= limit
    terms = step.terms + ([f"× {slow:.2f} (ranks × threads / {cal.cpu_count} cores)"] if slow > 1 else [])
    terms += ctx.notes + ([mem.note] if mem.note else [])
    t = step.step_s * slow
    return Prediction(
        **job_fields(job, cal),
        extrapolated=ctx.extrapolated,
        compute_s=step.compute_s * slow,
        comm_s=step.comm_s * slow,
        exposed_comm_s=step.exposed_s * slow,
        bubble_fraction=step.bubble,
        step_time_s=t,
        samples_per_s=job.global_batch / t,
        model_state_bytes=mem.model_state_bytes,
        activation_bytes=mem.activation_bytes,
        memory_bytes=mem.total_bytes,
        memory_limit_bytes=limit,
        fits=fits,
        infeasible=memory_infeasible(mem, limit) if fits is False else reason,
        terms="; ".join(terms),
    )
