"""The data-parallel families' communication on a rank, one function per flavour next to the plan
it models, its formula and source in the docstring: DDP's buckets (and their compression hooks),
naive per-tensor all-reduces, ZeRO-1, FSDP2 and HSDP (:data:`DP_FAMILY`); and the optimizer's
seconds where its state is sharded (docs/METRICS.md, "Predictions")."""

from __future__ import annotations

from collections.abc import Callable

from benchbench.costmodel.compute import achieved_flops, memory_bandwidth
from benchbench.costmodel.context import Ctx, Op, Part, fmt_s
from benchbench.costmodel.tensors import FP32, ddp_buckets, fsdp_units
from benchbench.models.registry import model_info
from benchbench.models.tensors import Tensor
from benchbench.spec.job import Job
from benchbench.spec.plan import Plan


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
    exposed = comm - ctx.hidden(comm - times[-1], backward_s)
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
    in :func:`optimizer_seconds`), then every parameter tensor is broadcast from the rank that owns it,
    after the step, not overlapped: exposed = DDP's + Σ_tensors t(broadcast, numel · 4 bytes)."""
    ddp = ddp_part(ctx, tensors, backward_s, compute_s, forwards)
    op, t = ctx.op("broadcast", "dp", ctx.job.plan.dp, [x.numel * FP32 for x in tensors])
    text = f"{ddp.text} + broadcast of updated shards ({op.calls}) {fmt_s(t)}"
    return Part([*ddp.ops, op], ddp.comm_s + t, ddp.exposed_s + t, ddp.extra_compute_s, text)


def fsdp_gathers(job: Job, forwards: int) -> int:
    """All-gathers of each FSDP2 unit per step (:func:`fsdp_part`): per forward pass two with
    resharding after forward, one without; under a pipeline one per step (the plan keeps the
    parameters gathered across micro-batches, ``Plan.fsdp_reshards_after_forward``, and torch's
    pipeline stage keeps them after each backward but the last, ``set_reshard_after_backward``)."""
    if job.plan.pp > 1:
        return 1
    return 2 * forwards if job.plan.fsdp_reshards_after_forward else forwards


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
    twice (reshard) or once; under a pipeline once per step (:func:`fsdp_gathers`).
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
    exposed = comm - ctx.hidden(comm - edge, compute_s)
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
    exposed = comm - ctx.hidden(comm - edge, compute_s)
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


def dp_flavour(plan: Plan) -> str:
    """The data-parallel flavour parallelize applies: the plan's, except none at dp = 1 under tp or pp."""
    return plan.dp_flavour if plan.dp > 1 or (plan.tp == 1 and plan.pp == 1) else "none"


def optimizer_seconds(job: Job, optimizer_s: float, tensors: list[Tensor]) -> float:
    """The optimizer's seconds on a rank: the whole model's, × the share of the parameters the
    rank holds (its stages, its tensor-parallel shard), / dp where the optimizer state is sharded
    (ZeRO-1, FSDP2: Rajbhandari et al. 2020; HSDP: / dp_shard)."""
    held = sum(t.numel for t in tensors) / model_info(job.model_cfg).params
    shards = {"zero1": job.plan.dp, "fsdp": job.plan.shard_size}.get(dp_flavour(job.plan), 1)
    return optimizer_s * held / shards
