"""The model-parallel families' communication on a rank: tensor parallelism (and sequence
parallel, async TP) per micro-batch, the pipeline's point-to-point transfers and its schedule's
makespan, context parallel's ring attention; each formula and its source in the docstring
(docs/METRICS.md, "Predictions")."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from benchbench.costmodel.compute import stream_bytes
from benchbench.costmodel.context import Ctx, Part, RankStep, fmt_s
from benchbench.costmodel.tensors import FP32
from benchbench.models.formulas import boundary
from benchbench.models.tensors import stage_layers
from benchbench.spec.job import Job
from benchbench.spec.plan import theoretical_bubble
from benchbench.spec.schedules import SCHEDULES


def tp_part(ctx: Ctx, stages: list[int], n_stages: int, batch: float) -> Part:
    """Tensor parallelism per micro-batch (Megatron-LM: Shoeybi et al. 2019, §3; sequence
    parallelism: Korthikanti et al., MLSys 2023, §4.2.1), as :mod:`~benchbench.strategies.tensor_parallel`
    lays it out, with A = b·s·h activation bytes and L = b·s·V logits bytes. Per block, without SP:
    forward 2 all-reduces of A (after proj and fc2) and backward one per ColwiseParallel module,
    the gradient of its input: q, k, v (separate modules, where Megatron fuses qkv into one) and
    fc1 — 4; Llama's SwiGLU has two, w1 and w3 — 5; the head: forward an all-gather of L
    (replicated logits), backward an all-reduce of A. With SP: per block forward 2 all-gathers + 2
    reduce-scatters of A, backward the mirror; the embedding's output gradient 1 all-gather; the
    head's input 1 all-gather forward, 1 reduce-scatter backward, and L's all-gather. All on the
    critical path (exposed). Dtypes: under bf16 the row-parallel outputs (proj, fc2: forward
    all-reduces or reduce-scatters, and their gradients' backward all-gathers) and the logits are
    bf16; the block inputs (norm outputs) and their gradients have the residual stream's dtype
    (:func:`stream_bytes`: fp32 under autocast alone, bf16 where FSDP2 gathers bf16 parameters —
    measured: tp and tp-sp records in bf16 at 2 ranks; fsdp-tp of the gpt and the Llama in bf16 at
    4 ranks, every tp collective bf16, tests/test_predict.py)."""
    job = ctx.job
    tp, c = job.plan.tp, job.model_cfg
    if tp <= 1:
        return Part()
    elt = 2 if job.dtype == "bf16" else FP32
    tokens, hidden, outputs = boundary(c)
    a, a32 = (batch * tokens * hidden * e for e in (elt, stream_bytes(job)))
    logits = batch * outputs * elt
    blocks = sum(len(stage_layers(int(c["layers"]), s, n_stages)) for s in stages)
    first, last = 0 in stages, n_stages - 1 in stages
    colwise = 5 if c["arch"] == "llama" else 4
    if job.plan.sequence_parallel:
        gathers = [a32] * (2 * blocks + first + last) + [a] * (2 * blocks) + [logits] * last
        counts = {"all_gather": gathers, "reduce_scatter": [a] * (2 * blocks) + [a32] * (2 * blocks + last)}
    else:
        counts = {"all_reduce": [a] * (2 * blocks) + [a32] * (colwise * blocks + last), "all_gather": [logits] * last}
    ops, total = [], 0.0
    for kind, sizes in counts.items():
        if sizes:
            op, t = ctx.op(kind, "tp", tp, sizes)
            ops.append(op)
            total += t
    return Part(ops, total, total, 0.0, f"tp collectives {fmt_s(total)} per micro-batch")


def async_tp_part(ctx: Ctx, tp: Part, compute_s: float) -> Part:
    """Async TP (:mod:`~benchbench.strategies.async_tp`): sequence parallel's all-gathers and
    reduce-scatters are decomposed into per-peer chunks overlapped with the matmuls that consume
    or produce them (Wang et al., ASPLOS 2023; PyTorch's micro-pipeline TP), so they hide behind
    the micro-batch's compute as data-parallel overlap does: exposed = comm − min(overlap · comm,
    compute). Without async_tp the part is returned as it is (all exposed)."""
    if not ctx.job.plan.async_tp or not tp.ops:
        return tp
    exposed = tp.comm_s - ctx.hidden(tp.comm_s, compute_s)
    return replace(tp, exposed_s=exposed, text=f"{tp.text} (async: exposed {fmt_s(exposed)})")


def activation_elems(model_cfg: dict[str, Any]) -> int:
    """Elements of one sample's activation between blocks, tokens x width
    (:func:`benchbench.models.formulas.boundary`: seq_len x hidden, a ViT's 1 + patches x hidden)."""
    tokens, hidden, _ = boundary(model_cfg)
    return tokens * hidden


def p2p_part(ctx: Ctx, stages: list[int], owners: dict[int, int], batch: float) -> Part:
    """Pipeline point-to-point per micro-batch (Narayanan et al., SC 2021, §2.2): at every stage
    boundary between ranks the forward activation (b_micro·s·h in the residual stream's dtype,
    :func:`stream_bytes`) goes one way and its gradient the other; a rank sends for each of its
    stages the activation to the next stage and the gradient to the previous one, where those
    live on another rank."""
    job, n = ctx.job, len(owners)
    a = batch * activation_elems(job.model_cfg) * stream_bytes(job)
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
