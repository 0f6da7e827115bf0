"""Predict a job's step time, throughput, memory and bubble from a calibration (docs/METRICS.md,
"Predictions").

A step on the busiest rank = its compute (the calibration's measured forward, backward and
optimizer times of the model at the rank's micro-batch, scaled by the share of the FLOPs and
parameters the rank holds) + the communication not hidden behind that compute, a pipeline
stretched by its bubble; on a CPU whose cores the ranks oversubscribe, everything slows by
ranks × threads / cores. Each strategy family has one function below, next to the plan it models,
its formula and source in the docstring; :func:`predict_job` composes them per mesh dimension
(hybrids: tp inside each micro-batch, pp around, dp once per step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from benchbench.costmodel.calibration import ADAMW_BYTES_PER_PARAM, FROM_SPEC, Calibration, PhasePoint
from benchbench.costmodel.memory import memory_estimate
from benchbench.costmodel.tensors import FP32, ddp_buckets, flop_share, fsdp_units, gpt_layer_flops, stage_tensors
from benchbench.models.tensors import Tensor, stage_layers
from benchbench.spec.job import Job
from benchbench.spec.plan import checkpointed_blocks, theoretical_bubble
from benchbench.spec.schedules import SCHEDULES, stage_ids


@dataclass(frozen=True)
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
    memory_limit_bytes: float | None  # the profile's memory_gb, bytes
    fits: bool | None  # memory_bytes <= memory_limit_bytes; None where the profile gives no memory
    infeasible: str | None  # why the plan cannot run (plan rules or memory), else None
    terms: str  # how step_time_s was composed, for people

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- the rank's view


@dataclass(frozen=True)
class Op:
    """Collective operations of one kind on one mesh dimension, as the record's ``comm`` rows
    count them: ``calls`` operations moving ``payload`` bytes in all (nccl-tests' sizes)."""

    kind: str
    dim: str
    n: int  # group size
    calls: int
    payload: float


@dataclass
class Part:
    """One family's communication on a rank: its operations, their α-β time and the exposed part."""

    ops: list[Op] = field(default_factory=list)
    comm_s: float = 0.0
    exposed_s: float = 0.0
    extra_compute_s: float = 0.0  # compression's own compute (casts, PowerSGD's matmuls)
    text: str = ""


@dataclass
class Ctx:
    """A job, its calibration and what predicting it found out (extrapolations, notes)."""

    job: Job
    cal: Calibration
    extrapolated: bool = False
    notes: list[str] = field(default_factory=list)

    def level(self, dim: str) -> str:
        """``intra`` when every group of mesh dimension ``dim`` lies on one node, else ``inter``.
        Ranks are laid out as parallelize.make_mesh's ``(dp, pp, cp, tp)`` mesh, tp innermost: a tp
        group spans tp consecutive ranks, a cp group tp·cp, a pp group tp·cp·pp, a dp group the
        whole world; under HSDP a ``dp_shard`` group spans dp_shard·pp·tp ranks (so a shard group
        within a node is ``intra``) and a ``dp_replicate`` group the whole world."""
        plan, per_node = self.job.plan, self.job.hardware_cfg.devices_per_node
        spans = {
            "tp": plan.tp,
            "cp": plan.tp * plan.cp,
            "pp": plan.tp * plan.cp * plan.pp,
            "dp_shard": plan.dp_shard * plan.pp * plan.tp,
        }
        span = spans.get(dim, self.job.world_size)
        return "intra" if span <= per_node else "inter"

    def time(self, kind: str, dim: str, n: int, payload: float, calls: int = 1) -> float:
        """α-β seconds of ``calls`` operations of ``payload / calls`` bytes each over ``n`` ranks
        (the calibration's fit; a send without a fit is timed as a broadcast between two ranks)."""
        if n <= 1 or payload <= 0 or calls <= 0:
            return 0.0
        level = self.level(dim)
        try:
            fit = self.cal.fit(kind, n, level)
        except KeyError:
            if kind != "send":
                raise
            fit = self.cal.fit("broadcast", 2, level)
            self.note("send timed with the broadcast fit (no send fit)")
        if self.cal.source != FROM_SPEC and (fit.group_size != n or fit.level != level):
            self.extrapolated = True
        return calls * fit.time(n, payload / calls)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def op(self, kind: str, dim: str, n: int, sizes: list[float]) -> tuple[Op, float]:
        """One operation per entry of ``sizes`` (bytes): the row and its summed α-β time."""
        t = sum(self.time(kind, dim, n, s) for s in sizes)
        return Op(kind, dim, n, len(sizes), float(sum(sizes))), t


def fmt_s(seconds: float) -> str:
    """Seconds for people, in s, ms or µs with 3 significant digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= scale or unit == "µs":
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


# --------------------------------------------------------------------------------- compute


def _same_model(cal: Calibration, label: str, model_cfg: dict[str, Any]) -> bool:
    known = cal.model_cfgs.get(label)
    if known is None:
        return True
    return {k: v for k, v in known.items() if k != "batch_size"} == model_cfg


def _interpolate(points: list[PhasePoint], batch: float) -> tuple[float, float, bool]:
    """Forward and backward seconds at ``batch``: linear between the measured points around it,
    affine through the two nearest beyond them (one point: proportional to the batch); the flag
    says the batch lies outside the measured ones."""
    pts = sorted(points, key=lambda p: p.batch)
    if len(pts) == 1:
        s = batch / pts[0].batch
        return pts[0].forward_s * s, pts[0].backward_s * s, batch != pts[0].batch
    lo = max([p for p in pts if p.batch <= batch] or pts[:1], key=lambda p: p.batch)
    hi = min([p for p in pts if p.batch >= batch] or pts[-1:], key=lambda p: p.batch)
    outside = batch < pts[0].batch or batch > pts[-1].batch
    if outside:
        lo, hi = (pts[0], pts[1]) if batch < pts[0].batch else (pts[-2], pts[-1])
    if hi.batch == lo.batch:
        return lo.forward_s, lo.backward_s, False
    w = (batch - lo.batch) / (hi.batch - lo.batch)
    f = lo.forward_s + w * (hi.forward_s - lo.forward_s)
    b = lo.backward_s + w * (hi.backward_s - lo.backward_s)
    if f <= 0 or b <= 0:  # an affine extrapolation below zero: proportional to the nearest point
        near = lo if batch < lo.batch else hi
        f, b = near.forward_s * batch / near.batch, near.backward_s * batch / near.batch
    return f, b, outside


def measured_points(ctx: Ctx) -> list[PhasePoint] | None:
    """The calibration's measured phase points of the job's model label (``None`` when the label
    is not calibrated, or was calibrated with another model config)."""
    cal, job = ctx.cal, ctx.job
    return cal.compute.get(job.model) if _same_model(cal, job.model, job.model_cfg) else None


def phases(ctx: Ctx, batch: float) -> tuple[float, float, float]:
    """The whole model's forward, backward and optimizer seconds of one step at ``batch`` samples
    on one rank: interpolated from the calibration's measured points of the job's model label;
    without them (or from spec) FLOPs / rate — forward = train_flops_per_sample / 3 per sample,
    backward twice that (Kaplan et al. 2020's 6N rule, as models.py counts), rate =
    ``compute_rates[precision]`` — and optimizer = parameters × ADAMW_BYTES_PER_PARAM / memory
    bandwidth."""
    from benchbench.models.registry import model_info

    job, cal = ctx.job, ctx.cal
    points = measured_points(ctx)
    if points:
        f, b, outside = _interpolate(points, batch)
        ctx.extrapolated |= outside
        if outside:
            ctx.note(f"batch {batch:g} outside the measured {sorted(p.batch for p in points)}")
        return f, b, sorted(p.optimizer_s for p in points)[len(points) // 2]
    info = model_info(job.model_cfg)
    precision = job.hardware_cfg.mfu_precision(job.dtype, "tf32")
    rate = cal.compute_rates.get(precision)
    if not rate or not cal.memory_bandwidth:
        missing = f"compute_rates[{precision}]" if not rate else "memory_bandwidth"
        raise ValueError(
            f"calibration of {cal.hardware} ({cal.source}) has no measured compute for model {job.model!r} "
            f"and no {missing}: run `benchbench calibrate` for this model, or give the profile's specs"
        )
    ctx.note(f"compute from spec: {precision} at {rate / 1e12:.3g} TFLOP/s")
    fwd = info.train_flops_per_sample / 3 * batch / rate
    return fwd, 2 * fwd, info.params * ADAMW_BYTES_PER_PARAM / cal.memory_bandwidth


def recompute_share(job: Job, stages: list[int], n_stages: int) -> float:
    """Activation checkpointing's recompute on a rank holding pipeline ``stages``, as a share of
    the whole model's forward: each checkpointed block of its stages runs its forward again in
    backward (Chen et al. 2016; Korthikanti et al. 2023, §5: full recomputation costs one extra
    forward per layer), except its last matmul (gpt fc2: 2·t·4h·h per sequence), whose output no op of
    the block saves — torch's non-reentrant checkpoint stops recomputing once the last saved
    tensor is back (``set_checkpoint_early_stop``, on by default) — / tp. 0 without checkpointing."""
    plan, cfg = job.plan, job.model_cfg
    if plan.activation_checkpoint == "none" or cfg["arch"] not in ("gpt", "llama", "vit"):
        return 0.0
    layers = int(cfg["layers"])
    kept = set(checkpointed_blocks([str(i) for i in range(layers)], plan.activation_checkpoint, plan.ac_every))
    mine = sum(str(i) in kept for s in stages for i in stage_layers(layers, s, n_stages))
    first, block, head, last_matmul = _block_flops(cfg)
    return mine * (block - last_matmul) / (first + layers * block + head) / plan.tp


def _block_flops(cfg: dict[str, Any]) -> tuple[float, float, float, float]:
    """Forward FLOPs per sample: the first stage's extras, one block, the head, and the block's
    last matmul (gpt fc2 8·t·h², Llama w2 2·t·f·d, ViT fc2 2·T·m·h), which recompute skips."""
    from benchbench.models.formulas import boundary

    tokens, h, _ = boundary(cfg)
    if cfg["arch"] == "gpt":
        block, head = gpt_layer_flops(cfg)
        return 0.0, block, head, 8.0 * tokens * h * h
    from benchbench.models.registry import ARCHITECTURES, size_args

    first, block, head = ARCHITECTURES[cfg["arch"]].stage_flops(**size_args(cfg))
    width = int(cfg["ffn_hidden" if cfg["arch"] == "llama" else "mlp_hidden"])
    return first, block, head, 2.0 * tokens * width * h


def memory_bandwidth(ctx: Ctx) -> float:
    """Bytes/s of the rank's memory: the spec figure, else what the measured optimizer step moves
    (parameters × ADAMW_BYTES_PER_PARAM / optimizer seconds: AdamW is memory-bound)."""
    from benchbench.models.registry import model_info

    if ctx.cal.memory_bandwidth:
        return ctx.cal.memory_bandwidth
    points = measured_points(ctx) or []
    optimizer_s = sorted(p.optimizer_s for p in points)[len(points) // 2] if points else 0.0
    if optimizer_s <= 0:
        raise ValueError(f"calibration of {ctx.cal.hardware}: no memory_bandwidth and no measured optimizer step")
    return model_info(ctx.job.model_cfg).params * ADAMW_BYTES_PER_PARAM / optimizer_s


def achieved_flops(ctx: Ctx) -> float:
    """FLOP/s the rank sustains on this model: training FLOPs of one sample / (forward + backward)
    at the job's per-rank batch (measured, or the spec rate)."""
    from benchbench.models.registry import model_info

    b = ctx.job.local_batch
    f, bw, _ = phases(ctx, b)
    return model_info(ctx.job.model_cfg).train_flops_per_sample * b / (f + bw)


def oversubscription(job: Job, cal: Calibration) -> float:
    """How much slower every rank runs because ranks share the CPU's cores: ranks × threads per
    rank / cores, when above 1 (the record's ``env.oversubscribed``); 1 on GPUs."""
    if job.hardware_cfg.device != "cpu" or not cal.cpu_count:
        return 1.0
    return max(1.0, job.world_size * job.threads_per_rank / cal.cpu_count)


# ----------------------------------------------------------------------- data parallel (dp)


def _hidden(ctx: Ctx, overlappable_s: float, compute_s: float) -> float:
    """Seconds of communication hidden behind ``compute_s`` of concurrent compute: the
    calibration's measured share ``overlap`` of what can overlap, at most the compute itself."""
    return min(ctx.cal.overlap * overlappable_s, compute_s)


def bucket_ops(ctx: Ctx, bucket: list[Tensor]) -> tuple[list[Op], float, float]:
    """One DDP bucket's communication under the plan's compression hook
    (:mod:`benchbench.strategies.compression`): the operations, their seconds and the hook's own
    compute seconds. ``none``: one all-reduce of the fp32 gradients. ``fp16``/``bf16``: the same
    all-reduce of half the bytes, plus the casts (fp32 → 16 bit and back: 4 + 2 + 2 + 4 = 12 bytes
    moved per element at the memory bandwidth). ``powersgd``: :func:`powersgd_ops`."""
    plan, n = ctx.job.plan, ctx.job.plan.dp
    elems = sum(t.numel for t in bucket)
    if plan.compression == "powersgd":
        return powersgd_ops(ctx, bucket)
    if plan.compression in ("fp16", "bf16"):
        op, t = ctx.op("all_reduce", "dp", n, [elems * 2])
        return [op], t, 12 * elems / memory_bandwidth(ctx)
    op, t = ctx.op("all_reduce", "dp", n, [elems * FP32])
    return [op], t, 0.0


def powersgd_ops(ctx: Ctx, bucket: list[Tensor]) -> tuple[list[Op], float, float]:
    """PowerSGD (Vogels, Karimireddy & Jaggi, NeurIPS 2019, Algorithm 1, as torch's
    ``powerSGD_hook``): each gradient viewed as a matrix M (rows = dim 0) with
    rows·cols > 2·(rows + cols)·r (torch's ``min_compression_rate`` 2) is replaced by factors P
    (rows × r) and Q (cols × r); the rest (vectors, small matrices) is all-reduced uncompressed.
    Three all-reduces per bucket — uncompressed, Ps, Qs — and per compressed matrix 6·rows·cols·r
    FLOPs (P = MQ, Q = MᵀP, the reconstruction PQᵀ) at the achieved FLOP rate plus error feedback
    (16 bytes per element) at the memory bandwidth."""
    r, n = ctx.job.plan.powersgd_rank, ctx.job.plan.dp
    plain, ps, qs, flops, elems = 0, 0, 0, 0.0, 0
    for t in bucket:
        rows, cols = t.shape[0], t.numel // t.shape[0]
        if len(t.shape) >= 2 and (rows + cols) * r * 2 < rows * cols:
            ps, qs, flops, elems = ps + rows * r, qs + cols * r, flops + 6 * rows * cols * r, elems + t.numel
        else:
            plain += t.numel
    ops, total = [], 0.0
    for size in (plain, ps, qs):
        if size:
            op, t = ctx.op("all_reduce", "dp", n, [size * FP32])
            ops.append(op)
            total += t
    return ops, total, flops / achieved_flops(ctx) + 16 * elems / memory_bandwidth(ctx)


def ddp_part(ctx: Ctx, tensors: list[Tensor], backward_s: float, compute_s: float, forwards: int) -> Part:
    """DDP (Li et al., "PyTorch Distributed", VLDB 2020, §3.2-3.3): gradients all-reduced in
    buckets of ``bucket_cap_mb`` (:func:`~benchbench.costmodel.tensors.ddp_buckets`), each launched
    when its last gradient is ready, so every bucket but the last overlaps the rest of the
    backward pass; once per step (accumulation and pipeline micro-batches run under ``no_sync``):

        exposed = Σ_buckets t_i − min(overlap · Σ_{i < last} t_i, backward)

    with t_i the α-β time of bucket i's operations (:func:`bucket_ops`) and ``overlap`` the
    calibration's measured share."""
    ops: list[Op] = []
    times, extra = [], 0.0
    buckets = ddp_buckets(list(reversed(tensors)), ctx.job.plan.bucket_cap_mb)
    for bucket in buckets:
        b_ops, t, x = bucket_ops(ctx, bucket)
        ops, times, extra = ops + b_ops, [*times, t], extra + x
    comm = sum(times)
    exposed = comm - _hidden(ctx, comm - times[-1], backward_s)
    text = f"dp all-reduce {len(buckets)} bucket(s) {fmt_s(comm)}, overlap {ctx.cal.overlap:.2f}"
    return Part(ops, comm, exposed, extra, text)


def naive_part(ctx: Ctx, tensors: list[Tensor], backward_s: float, compute_s: float, forwards: int) -> Part:
    """Naive data parallel (Li et al., VLDB 2020, §2; :class:`~benchbench.strategies.data_parallel.NaiveGradSync`):
    one all-reduce per parameter tensor after backward, nothing overlapped:
    exposed = Σ_tensors t(all_reduce, numel · 4 bytes)."""
    op, t = ctx.op("all_reduce", "dp", ctx.job.plan.dp, [x.numel * FP32 for x in tensors])
    return Part([op], t, t, 0.0, f"dp all-reduce per tensor ({op.calls}) {fmt_s(t)}, not overlapped")


def zero1_part(ctx: Ctx, tensors: list[Tensor], backward_s: float, compute_s: float, forwards: int) -> Part:
    """ZeRO-1 (Rajbhandari et al., SC 2020, §5.1; ``ZeroRedundancyOptimizer``): DDP's bucketed
    all-reduce (:func:`ddp_part`), each rank updates its 1/dp of the parameters (optimizer time / dp,
    in :func:`_optimizer_s`), then every parameter tensor is broadcast from the rank that owns it,
    after the step, not overlapped: exposed = DDP's + Σ_tensors t(broadcast, numel · 4 bytes)."""
    ddp = ddp_part(ctx, tensors, backward_s, compute_s, forwards)
    op, t = ctx.op("broadcast", "dp", ctx.job.plan.dp, [x.numel * FP32 for x in tensors])
    text = f"{ddp.text} + broadcast of updated shards ({op.calls}) {fmt_s(t)}"
    return Part([*ddp.ops, op], ddp.comm_s + t, ddp.exposed_s + t, ddp.extra_compute_s, text)


def fsdp_gathers(job: Job, forwards: int) -> int:
    """All-gathers of each FSDP2 unit per step (:func:`fsdp_part`)."""
    reshard = job.plan.reshard_after_forward
    if job.plan.pp > 1:
        return forwards + 1 if reshard else 1
    return 2 * forwards if reshard else forwards


def fsdp_copies(ctx: Ctx, units: list[int], gathers: int) -> float:
    """Seconds of FSDP2's own copies at the memory bandwidth (every byte read and written): each
    all-gather copies the rank's shards into one input buffer (copy-in, S/dp) and the gathered
    output back into the parameters (copy-out, S); the reduce-scatter copies the gradients into
    one input buffer (S) and the reduced shard out (S/dp) — ``foreach_all_gather``,
    ``foreach_all_gather_copy_out``, ``foreach_reduce`` in torch's ``_fsdp_collectives``. On one
    rank only the copy-out of each gather remains (``_fsdp_param_group``: world size 1)."""
    dp, total = ctx.job.plan.shard_size, sum(units) * FP32
    moved = gathers * total * (1 + 1 / dp) + total * (1 + 1 / dp) if dp > 1 else gathers * total
    return 2 * moved / memory_bandwidth(ctx)


def fsdp_part(ctx: Ctx, tensors: list[Tensor], backward_s: float, compute_s: float, forwards: int) -> Part:
    """FSDP2 (Zhao et al., "PyTorch FSDP", VLDB 2023, §3.2-3.4; ``fully_shard`` per block and the
    root): each unit's parameters (dim 0 padded to a multiple of dp) are all-gathered before its
    forward and, with ``reshard_after_forward``, again before its backward; its gradients are
    reduce-scattered once per step. Per forward pass (accumulation micro-step) a unit gathers
    twice (reshard) or once; under a pipeline torch keeps gathered parameters from the first
    backward until the last (``set_reshard_after_backward(False)``): m + 1 gathers (reshard) or 1.
    Gathers are prefetched behind the previous unit's compute and reduce-scatters run behind the
    next unit's backward, so all but the first gather and the last reduce-scatter can hide:

        exposed = Σ t − min(overlap · (Σ t − t_first_gather − t_last_reduce_scatter), compute)

    plus FSDP2's buffer copies (:func:`fsdp_copies`) as compute. Parameters are gathered in bf16
    for bf16 jobs (MixedPrecisionPolicy), gradients reduced in fp32. Over one rank fully_shard
    issues no collective (the records show none). HSDP: :func:`hsdp_part`."""
    if ctx.job.plan.dp_shard:
        return hsdp_part(ctx, tensors, backward_s, compute_s, forwards)
    job, dp = ctx.job, ctx.job.plan.dp
    units = fsdp_units(tensors, dp)
    gathers = fsdp_gathers(job, forwards)
    copies = fsdp_copies(ctx, units, gathers)
    if dp <= 1:
        return Part([], 0.0, 0.0, copies, f"FSDP2 copies {fmt_s(copies)}")
    elt = 2 if job.dtype == "bf16" else FP32
    ag, t_ag = ctx.op("all_gather", "dp", dp, [u * elt for u in units] * gathers)
    rs, t_rs = ctx.op("reduce_scatter", "dp", dp, [u * FP32 for u in units])
    comm = t_ag + t_rs
    edge = ctx.time("all_gather", "dp", dp, units[0] * elt) + ctx.time("reduce_scatter", "dp", dp, units[-1] * FP32)
    exposed = comm - _hidden(ctx, comm - edge, compute_s)
    text = f"dp all-gather ×{gathers} + reduce-scatter of {len(units)} units {fmt_s(comm)}, copies {fmt_s(copies)}"
    return Part([ag, rs], comm, exposed, copies, text)


def hsdp_part(ctx: Ctx, tensors: list[Tensor], backward_s: float, compute_s: float, forwards: int) -> Part:
    """HSDP (Zhao et al., VLDB 2023, §3.3 "hybrid sharding"; FSDP2 ``fully_shard`` over the 2-D
    mesh ``(dp_replicate, dp_shard)``, as torchtitan's ``dp_replicate``/``dp_shard``): FSDP2
    within each shard group of k = dp_shard ranks — all-gathers and one reduce-scatter per unit
    (dim 0 padded to a multiple of k), as :func:`fsdp_part` counts them over k — then each unit's
    reduced shard (its padded elements / k, fp32) all-reduced across the dp / k replicas. The
    all-reduces run behind the next unit's backward like the reduce-scatters: all but the first
    gather and the last unit's reduce-scatter and all-reduce can hide. Each group is timed at its
    own level (:meth:`Ctx.level`): a shard group within a node, replicas across nodes."""
    job, k, r = ctx.job, ctx.job.plan.dp_shard, ctx.job.plan.replicas
    units = fsdp_units(tensors, k)
    gathers = fsdp_gathers(job, forwards)
    copies = fsdp_copies(ctx, units, gathers)
    elt = 2 if job.dtype == "bf16" else FP32
    ag, t_ag = ctx.op("all_gather", "dp_shard", k, [u * elt for u in units] * gathers)
    rs, t_rs = ctx.op("reduce_scatter", "dp_shard", k, [u * FP32 for u in units])
    ar, t_ar = ctx.op("all_reduce", "dp_replicate", r, [u * FP32 / k for u in units])
    comm = t_ag + t_rs + t_ar
    edge = (
        ctx.time("all_gather", "dp_shard", k, units[0] * elt)
        + ctx.time("reduce_scatter", "dp_shard", k, units[-1] * FP32)
        + ctx.time("all_reduce", "dp_replicate", r, units[-1] * FP32 / k)
    )
    exposed = comm - _hidden(ctx, comm - edge, compute_s)
    text = (
        f"hsdp {r}x{k}: all-gather ×{gathers} + reduce-scatter over {k}, all-reduce over {r} replicas, "
        f"of {len(units)} units {fmt_s(comm)}, copies {fmt_s(copies)}"
    )
    return Part([ag, rs, ar], comm, exposed, copies, text)


def no_dp_part(ctx: Ctx, tensors: list[Tensor], backward_s: float, compute_s: float, forwards: int) -> Part:
    """One process (``single``), or tp/pp without a dp dimension: no gradient synchronisation."""
    return Part()


#: dp flavour -> its communication (each formula in the function's docstring).
DP_FAMILY: dict[str, Callable[[Ctx, list[Tensor], float, float, int], Part]] = {
    "none": no_dp_part,
    "naive": naive_part,
    "ddp": ddp_part,
    "zero1": zero1_part,
    "fsdp": fsdp_part,
}


def dp_flavour(job: Job) -> str:
    """The flavour parallelize applies: the plan's, except none at dp = 1 under tp or pp."""
    plan = job.plan
    return plan.dp_flavour if plan.dp > 1 or (plan.tp == 1 and plan.pp == 1) else "none"


# ---------------------------------------------------------------------- tensor parallel (tp)


def tp_part(ctx: Ctx, stages: list[int], n_stages: int, batch: float) -> Part:
    """Tensor parallelism per micro-batch (Megatron-LM: Shoeybi et al. 2019, §3; sequence
    parallelism: Korthikanti et al., MLSys 2023, §4.2.1), as :mod:`~benchbench.strategies.tensor_parallel`
    lays it out, with A = b·s·h activation bytes and L = b·s·V logits bytes. Per block, without SP:
    forward 2 all-reduces of A (after proj and fc2) and backward 4 (the input gradients of q, k, v
    — three ColwiseParallel modules, where Megatron fuses qkv into one — and of fc1); the head:
    forward an all-gather of L (replicated logits), backward an all-reduce of A. With SP: per block
    forward 2 all-gathers + 2 reduce-scatters of A, backward the mirror; the embedding's output
    gradient 1 all-gather; the head's input 1 all-gather forward, 1 reduce-scatter backward, and
    L's all-gather. All on the critical path (exposed). Under bf16 autocast only the row-parallel
    outputs (proj, fc2: forward all-reduces or reduce-scatters, and their gradients' backward
    all-gathers) and the logits are bf16; the block inputs (LayerNorm outputs, the residual
    stream) and their gradients stay fp32 (measured: tp and tp-sp records, bf16, 2 ranks)."""
    job = ctx.job
    tp, c = job.plan.tp, job.model_cfg
    if tp <= 1:
        return Part()
    elt = 2 if job.dtype == "bf16" else FP32
    from benchbench.models.formulas import boundary

    tokens, hidden, outputs = boundary(c)
    a, a32 = (batch * tokens * hidden * e for e in (elt, FP32))
    logits = batch * outputs * elt
    blocks = sum(len(stage_layers(int(c["layers"]), s, n_stages)) for s in stages)
    first, last = 0 in stages, n_stages - 1 in stages
    if job.plan.sequence_parallel:
        gathers = [a32] * (2 * blocks + first + last) + [a] * (2 * blocks) + [logits] * last
        counts = {"all_gather": gathers, "reduce_scatter": [a] * (2 * blocks) + [a32] * (2 * blocks + last)}
    else:
        counts = {"all_reduce": [a] * (2 * blocks) + [a32] * (4 * blocks + last), "all_gather": [logits] * last}
    ops, total = [], 0.0
    for kind, sizes in counts.items():
        if sizes:
            op, t = ctx.op(kind, "tp", tp, sizes)
            ops.append(op)
            total += t
    return Part(ops, total, total, 0.0, f"tp collectives {fmt_s(total)} per micro-batch")


# -------------------------------------------------------------------- pipeline parallel (pp)


def activation_elems(model_cfg: dict[str, Any]) -> int:
    """Elements of one sample's activation between blocks, tokens x width
    (:func:`benchbench.models.presets.boundary`: seq_len x hidden, a ViT's 1 + patches x hidden)."""
    from benchbench.models.formulas import boundary

    tokens, hidden, _ = boundary(model_cfg)
    return tokens * hidden


def p2p_part(ctx: Ctx, stages: list[int], owners: dict[int, int], batch: float) -> Part:
    """Pipeline point-to-point per micro-batch (Narayanan et al., SC 2021, §2.2): at every stage
    boundary between ranks the forward activation (b_micro·s·h, fp32: the residual stream) goes
    one way and its gradient the other; a rank sends for each of its stages the activation to the
    next stage and the gradient to the previous one, where those live on another rank."""
    job, n = ctx.job, len(owners)
    a = batch * activation_elems(job.model_cfg) * FP32
    mine = owners[stages[0]]
    sends = [s for s in stages if s + 1 < n and owners[s + 1] != mine]
    sends += [s for s in stages if s > 0 and owners[s - 1] != mine]
    op, t = ctx.op("send", "pp", job.plan.pp, [a] * len(sends))
    return Part([op] if sends else [], t, t, 0.0, f"pp send {fmt_s(t)} per micro-batch")


def pipeline_makespan(ctx: Ctx, per_mb: list[float], transfer: list[float], hop: float) -> tuple[float, str]:
    """Seconds of the pipeline schedule's step, given each pipeline rank's seconds per micro-batch
    (forward + backward of its stages, tensor-parallel collectives included), its transfers per
    micro-batch and one boundary crossing ``hop``.

    One stage per rank (GPipe, 1F1B: Huang et al. 2019; Narayanan et al. 2019) — the closed form
    of a flow shop with unequal stages: the first micro-batch fills the pipeline forward and the
    last drains it backward (Σ_r T_r + 2(p−1)·hop), the m − 1 others pass at the pace of the
    slowest rank: makespan = Σ_r T_r + 2(p−1)·hop + (m − 1)·max_r(T_r + X_r). With equal stages
    and free transfers it is (m + p − 1)·T, i.e. bubble (p−1)/(m+p−1).

    Several stages per rank (interleaved, looped, zero bubble): schedules.py's closed-form bubble
    β(p, m, v) on the busiest rank: makespan = m·max_r(T_r + X_r) / (1 − β)."""
    plan = ctx.job.plan
    p, m = plan.pp, plan.micro_batches
    slowest = max(t + x for t, x in zip(per_mb, transfer, strict=True))
    if not SCHEDULES[plan.schedule].multi_stage:
        return sum(per_mb) + 2 * (p - 1) * hop + (m - 1) * slowest, "flow-shop closed form (unequal stages)"
    beta = theoretical_bubble(plan)
    if beta is None:  # zero-bubble V below 2p micro-batches: no closed form; the interleaved one
        beta = (p - 1) / (plan.virtual_stages * m + p - 1)
        ctx.note(f"{plan.schedule} at m < 2p: bubble taken as (p−1)/(v·m+p−1)")
    return m * slowest / (1 - beta), f"closed form β = {SCHEDULES[plan.schedule].bubble_formula} = {beta:.3f}"


# ----------------------------------------------------------------------------- composition


@dataclass
class RankStep:
    """One rank's step, composed: compute, communication, exposed part, bubble."""

    compute_s: float
    comm_s: float
    exposed_s: float
    step_s: float
    bubble: float | None
    ops: list[Op]
    terms: list[str]


def _optimizer_s(job: Job, optimizer_s: float, tensors: list[Tensor]) -> float:
    """The optimizer's seconds on a rank: the whole model's, × the share of the parameters the
    rank holds (its stages, its tensor-parallel shard), / dp where the optimizer state is sharded
    (ZeRO-1, FSDP2: Rajbhandari et al. 2020; HSDP: / dp_shard)."""
    from benchbench.models.registry import model_info

    held = sum(t.numel for t in tensors) / model_info(job.model_cfg).params
    shards = {"zero1": job.plan.dp, "fsdp": job.plan.shard_size}.get(dp_flavour(job), 1)
    return optimizer_s * held / shards


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
    opt = _optimizer_s(job, o, tensors)
    tp = async_tp_part(ctx, tp_part(ctx, [0], 1, job.local_batch / k), f + b)
    dp = DP_FAMILY[dp_flavour(job)](ctx, tensors, b, k * (f + b), k)
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


def pipeline_step(ctx: Ctx) -> RankStep:  # long: a pass over the pipeline ranks, then the schedule and the dp tail
    """With a pipeline: per pipeline rank r, T_r = (F + B)·share_r + F·recompute_r
    (:func:`recompute_share`) + TP_r per micro-batch of
    b_local / m samples, X_r its sends; the schedule's makespan (:func:`pipeline_makespan`); then
    each rank's data-parallel communication (once, after its last backward) and optimizer:
    step = makespan + max_r(exposed dp_r + optimizer_r). Bubble = 1 − mean_r(m·T_r) / makespan."""
    job, plan = ctx.job, ctx.job.plan
    p, m, v = plan.pp, plan.micro_batches, plan.virtual_stages
    n_stages, batch = p * v, job.local_batch / m
    f, b, o = phases(ctx, batch)
    f, b = f * float8_factor(ctx), b * float8_factor(ctx)
    owners = {s: r for r in range(p) for s in stage_ids(plan.schedule, r, p, v)}
    per_mb, transfer, tails, ranks = [], [], [], []
    for r in range(p):
        stages = stage_ids(plan.schedule, r, p, v)
        share = flop_share(job.model_cfg, stages, n_stages, plan.tp)
        fb = (f + b) * share + f * recompute_share(job, stages, n_stages)  # per micro-batch, recompute included
        tensors = [t for s in stages for t in stage_tensors(job.model_cfg, s, n_stages, plan.tp)]
        tp = async_tp_part(ctx, tp_part(ctx, stages, n_stages, batch), fb)
        x = p2p_part(ctx, stages, owners, batch)
        dp = DP_FAMILY[dp_flavour(job)](ctx, tensors, fb - f * share, m * fb, m)
        opt = _optimizer_s(job, o, tensors)
        per_mb.append(fb + tp.exposed_s)
        transfer.append(x.exposed_s)
        tails.append(opt + dp.exposed_s + dp.extra_compute_s)
        ranks.append((m * fb + opt, m * (tp.comm_s + x.comm_s) + dp.comm_s, tp, x, dp))
    hop = ctx.time("send", "pp", p, batch * activation_elems(job.model_cfg) * FP32)
    makespan, how = pipeline_makespan(ctx, per_mb, transfer, hop)
    bubble = max(0.0, 1 - m * sum(per_mb) / p / makespan)
    busiest = max(range(p), key=lambda r: m * per_mb[r] + tails[r])
    compute, comm, tp, x, dp = ranks[busiest]
    step = makespan + max(tails)
    exposed = max(0.0, step - compute)  # everything on the busiest rank that is not its compute
    ops = [Op(q.kind, q.dim, q.n, q.calls * m, q.payload * m) for q in tp.ops + x.ops] + dp.ops
    terms = [
        f"pipeline p={p} m={m} v={v}: makespan {fmt_s(makespan)} ({how}), bubble {bubble:.3f}",
        f"busiest rank {busiest}: compute {fmt_s(compute)} (per micro-batch F+B {fmt_s(f + b)} × share)",
        *([f"{m}× {tp.text}"] if tp.ops else []),
        f"{m}× {x.text}",
        *([f"{dp.text}, exposed {fmt_s(dp.exposed_s)}"] if dp.ops else []),
    ]
    return RankStep(compute, comm, exposed, step, bubble, ops, terms)


# ------------------------------------------------- GPU-only steps: float8, async TP, context parallel


def float8_factor(ctx: Ctx) -> float:
    """Compute-time factor of a float8 plan (:mod:`~benchbench.strategies.float8`): the blocks'
    dense matmuls (24·T·h² of each layer's forward FLOPs, models.py) run at the calibration's
    ``fp8`` rate instead of the job's precision; attention scores and the LM head (kept in high
    precision) do not: factor = 1 − s + s · rate_precision / rate_fp8, s the blocks' dense share
    of the training FLOPs. Without an fp8 rate (a profile without ``peak_flops.fp8``, a measured
    calibration) the factor is 1 and the prediction says so. torchao's casts and scale
    computations (memory-bound) are not modelled."""
    job = ctx.job
    if not job.plan.float8:
        return 1.0
    precision = job.hardware_cfg.mfu_precision(job.dtype, "tf32")
    fp8, base = ctx.cal.compute_rates.get("fp8"), ctx.cal.compute_rates.get(precision)
    if not fp8 or not base:
        ctx.note(f"float8: no fp8 compute rate in the calibration; matmuls predicted at {precision}")
        return 1.0
    c = job.model_cfg
    if c["arch"] != "gpt":
        ctx.note(f"float8: the fp8 share is derived for the gpt only; {c['arch']} matmuls predicted at {precision}")
        return 1.0
    t, h, layers = int(c["seq_len"]), int(c["hidden"]), int(c["layers"])
    dense = layers * 24 * t * h * h
    s = dense / (layers * (24 * t * h * h + 2 * t * t * h) + 2 * t * h * int(c["vocab"]))
    ctx.note(f"float8: block matmuls ({s:.0%} of FLOPs) at fp8 {fp8 / 1e12:.3g} TFLOP/s")
    return 1 - s + s * base / fp8


def async_tp_part(ctx: Ctx, tp: Part, compute_s: float) -> Part:
    """Async TP (:mod:`~benchbench.strategies.async_tp`): sequence parallel's all-gathers and
    reduce-scatters are decomposed into per-peer chunks overlapped with the matmuls that consume
    or produce them (Wang et al., ASPLOS 2023; PyTorch's micro-pipeline TP), so they hide behind
    the micro-batch's compute as data-parallel overlap does: exposed = comm − min(overlap · comm,
    compute). Without async_tp the part is returned as it is (all exposed)."""
    if not ctx.job.plan.async_tp or not tp.ops:
        return tp
    exposed = tp.comm_s - _hidden(ctx, tp.comm_s, compute_s)
    return replace(tp, exposed_s=exposed, text=f"{tp.text} (async: exposed {fmt_s(exposed)})")


def cp_as_data_parallel(job: Job) -> Job:
    """The job a context-parallel plan costs like, but for its ring attention: each of dp·cp ranks
    computes 1/(dp·cp) of the step's tokens (head-tail balancing evens the causal attention work)
    and FSDP2 shards over the flattened dp x cp mesh, as data parallel over dp·cp ranks at the
    same global batch does; activations likewise. Plans without cp are returned as they are."""
    if job.plan.cp <= 1:
        return job
    return job.replace(plan=replace(job.plan, dp=job.plan.dp * job.plan.cp, cp=1))


def with_ring_attention(ctx: Ctx, step: RankStep, view: Ctx) -> RankStep:
    """Add context parallel's ring attention (torch's ``_templated_ring_attention`` with the
    ``allgather`` rotate method, ``torch/distributed/tensor/experimental/_attention.py``) to the
    step of :func:`cp_as_data_parallel`'s job: per block forward one all-gather of K and V over
    the cp ranks (2·b·T·h/tp elements gathered, b = the dp rank's batch, T the whole sequence),
    backward the same all-gather and a reduce-scatter of their gradients; not overlapped."""
    job, c = ctx.job, ctx.job.model_cfg
    elt = 2 if job.dtype == "bf16" else FP32
    kv = 2 * job.local_batch * int(c["seq_len"]) * int(c["hidden"]) / job.plan.tp * elt
    layers, cp = int(c["layers"]), job.plan.cp
    ag, t_ag = ctx.op("all_gather", "cp", cp, [kv] * (2 * layers))
    rs, t_rs = ctx.op("reduce_scatter", "cp", cp, [kv] * layers)
    comm = t_ag + t_rs
    view.notes.extend(n for n in ctx.notes if n not in view.notes)
    terms = [*step.terms, f"cp ring attention: all-gather KV ×{2 * layers} + reduce-scatter ×{layers} {fmt_s(comm)}"]
    return replace(
        step,
        comm_s=step.comm_s + comm,
        exposed_s=step.exposed_s + comm,
        step_s=step.step_s + comm,
        ops=[*step.ops, ag, rs],
        terms=terms,
    )


def comm_rows(job: Job, cal: Calibration) -> list[dict[str, Any]]:
    """The analytic communication of one step as the record's ``comm`` rows: per (kind, dim) the
    row of the rank moving the most payload (``merge_ranks`` in strategies/comm_stats.py), calls
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
    dp = DP_FAMILY[dp_flavour(job)](ctx, tensors, 0.0, 0.0, m)
    return [Op(q.kind, q.dim, q.n, q.calls * m, q.payload * m) for q in tp.ops + x.ops] + dp.ops


# -------------------------------------------------------------------------------- the job


def _infeasible(job: Job, cal: Calibration, reason: str) -> Prediction:
    nan = math.nan
    limit = job.hardware_cfg.memory_gb * 1e9 if job.hardware_cfg.memory_gb else None
    return Prediction(
        job.model,
        job.hardware,
        job.strategy,
        job.world_size,
        job.plan.dp,
        job.plan.tp,
        job.plan.pp,
        job.global_batch,
        cal.source,
        False,
        nan,
        nan,
        nan,
        None,
        nan,
        nan,
        nan,
        None,
        nan,
        limit,
        None,
        reason,
        "",
    )


def predict_job(job: Job, cal: Calibration) -> Prediction:
    """The cost model's prediction of ``job`` on the hardware ``cal`` describes: the busiest
    rank's step (:func:`flat_step` or :func:`pipeline_step`) × the CPU oversubscription
    (:func:`oversubscription`), memory against the profile's ``memory_gb``; a plan the rules
    refuse (:func:`~benchbench.spec.job.job_infeasible_reason`) gets its reason and no figures."""
    from benchbench.spec.job import job_infeasible_reason

    reason = job_infeasible_reason(job)
    if reason:
        return _infeasible(job, cal, reason)
    ctx = Ctx(cp_as_data_parallel(job), cal)
    if job.plan.compile:  # the calibration times eager blocks; no measured speed-up to apply
        ctx.note("compile: compute as eager (uncalibrated for compiled blocks); compile time not in the step")
    step = pipeline_step(ctx) if job.plan.pp > 1 else flat_step(ctx)
    if job.plan.cp > 1:
        step = with_ring_attention(Ctx(job, cal), step, ctx)
    slow = oversubscription(job, cal)
    mem = memory_estimate(ctx.job)
    limit = job.hardware_cfg.memory_gb * 1e9 if job.hardware_cfg.memory_gb else None
    fits = None if limit is None else mem.total_bytes <= limit
    if fits is False:
        reason = (
            f"memory: {mem.total_bytes / 1e9:.1f} GB per rank (model state {mem.model_state_bytes / 1e9:.1f} + "
            f"activations {(mem.activation_bytes or 0) / 1e9:.1f}) > {limit / 1e9:.0f} GB"
        )
    terms = step.terms + ([f"× {slow:.2f} (ranks × threads / {cal.cpu_count} cores)"] if slow > 1 else [])
    terms += ctx.notes + ([mem.note] if mem.note else [])
    t = step.step_s * slow
    return Prediction(
        job.model,
        job.hardware,
        job.strategy,
        job.world_size,
        job.plan.dp,
        job.plan.tp,
        job.plan.pp,
        job.global_batch,
        cal.source,
        ctx.extrapolated,
        step.compute_s * slow,
        step.comm_s * slow,
        step.exposed_s * slow,
        step.bubble,
        t,
        job.global_batch / t,
        mem.model_state_bytes,
        mem.activation_bytes,
        mem.total_bytes,
        limit,
        fits,
        reason,
        "; ".join(terms),
    )


# ------------------------------------------------------------------------------- many jobs


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
    or those and every candidate of :func:`~benchbench.costmodel.space.candidates` (``"all"``)."""
    from benchbench.costmodel.space import candidates
    from benchbench.spec.hardware import load_hardware
    from benchbench.spec.job import make_job

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
