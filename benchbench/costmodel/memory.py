"""What one rank holds in memory, estimated (analytic, no model built): the figures the
cost model predicts and the study's feasibility check uses; the rank's measured ones
(:mod:`benchbench.rank.measure.memory`) are reported beside them.

* :func:`model_state_estimate` — bytes per parameter (:data:`BYTES_PER_PARAM`; Rajbhandari et al.,
  "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", SC 2020, §3.1 and §5)
  times the parameters the rank holds, divided as its plan shards them: ZeRO-1 the optimizer state
  over dp (P_os), FSDP2 (ZeRO-3, P_os+g+p) all three over dp, tensor parallel the TP-split weights
  over tp, a pipeline rank its stages' parameters;
* :func:`ddp_bucket_estimate` — DDP's flat gradient buckets beside ``.grad``;
* :func:`activation_estimate` — saved activations per step, per tensor, after the accounting of
  Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models", MLSys 2023
  (arXiv:2205.05198, §4.1, Table 2), adapted to this model, in the job's dtype and tensor- and
  sequence-parallel split (docs/METRICS.md);
* :func:`activation_peak_estimate` — the most of them held at once: one forward, or the
  micro-batches a pipeline schedule holds in flight;
* :func:`memory_estimate` — model state, the activation peak and DDP's buckets together, the
  per-rank figure a plan is checked against a device's memory with (:class:`MemoryEstimate`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from benchbench.costmodel.data_parallel import dp_flavour
from benchbench.costmodel.tensors import stage_tensors
from benchbench.models.formulas import FP32, Saving
from benchbench.models.registry import ARCHITECTURES, model_info
from benchbench.spec.job import Job
from benchbench.spec.plan import checkpointed_blocks
from benchbench.spec.schedules import compute_order, stage_ids

#: Bytes per parameter held as (parameter, gradient, optimizer state). Rajbhandari et al. 2020
#: (ZeRO, §3.1): mixed-precision Adam keeps fp16 parameters and gradients and an fp32 copy of the
#: parameters, momentum and variance: 2 + 2 + 12 (K = 12). benchbench's plans keep fp32 parameters
#: and gradients even for bf16 jobs (autocast computes in bf16; FSDP2's MixedPrecisionPolicy casts
#: only the transient unsharded copy), so every job is "fp32-adamw"; plain SGD without momentum
#: (the gate's step) keeps no state.
BYTES_PER_PARAM: dict[str, tuple[int, int, int]] = {
    "fp32-adamw": (4, 4, 8),
    "fp32-sgd": (4, 4, 0),
    "mixed-adam": (2, 2, 12),
}

# ---------------------------------------------------------------------------- model state


def gpt_params_held(cfg: dict[str, Any], stages: list[int], n_stages: int, tp: int) -> float:
    """Parameters a rank holds of a gpt: its pipeline stages' layers (stage s: layers
    ⌊s·L/n⌋ … ⌊(s+1)·L/n⌋ − 1), embeddings on stage 0, final LayerNorm and head on the last; the
    tensor-parallel split weights / tp. Per block 12h² + 7h are split (q, k, v and fc1 weights and
    biases column-wise, proj and fc2 weights row-wise) and 6h replicated (proj and fc2 biases, two
    LayerNorms); the head's V·h is split; embeddings (V + T)·h and the final LayerNorm 2h are not."""
    layers, h, v, t = (int(cfg[k]) for k in ("layers", "hidden", "vocab", "seq_len"))
    held = 0.0
    for s in stages:
        n_layers = (s + 1) * layers // n_stages - s * layers // n_stages
        held += n_layers * ((12 * h * h + 7 * h) / tp + 6 * h)
        held += (v + t) * h if s == 0 else 0
        held += 2 * h + v * h / tp if s == n_stages - 1 else 0
    return held


def rank_stages(job: Job) -> list[list[int]]:
    """The pipeline stages of each pipeline rank ([[0]] without a pipeline)."""
    plan = job.plan
    if plan.pp == 1:
        return [[0]]
    return [stage_ids(plan.schedule, r, plan.pp, plan.virtual_stages) for r in range(plan.pp)]


def params_held(job: Job) -> float:
    """Parameters of the rank holding the most (max over pipeline ranks), before data-parallel
    sharding."""
    plan = job.plan
    n = plan.pp * plan.virtual_stages
    if job.model_cfg["arch"] == "gpt":
        return max(gpt_params_held(job.model_cfg, st, n, plan.tp) for st in rank_stages(job))
    if job.model_cfg["arch"] == "mlp":
        return float(model_info(job.model_cfg).params)
    return float(
        max(sum(t.numel for s in st for t in stage_tensors(job.model_cfg, s, n, plan.tp)) for st in rank_stages(job))
    )


def model_state_estimate(job: Job, kind: str = "fp32-adamw") -> float:
    """Model-state bytes of the rank holding the most (max over pipeline ranks), as the plan
    shards them: ZeRO-1 (P_os) the optimizer state / dp; FSDP2 (ZeRO-3, P_os+g+p) all / dp;
    DDP, naive and single none. Not counted: AdamW's step counters (4 bytes per parameter tensor
    whose state the rank holds) and FSDP2's padding of dim 0 to a multiple of dp."""
    plan = job.plan
    p, g, o = BYTES_PER_PARAM[kind]
    held = params_held(job)
    flavour = dp_flavour(plan)
    if flavour == "fsdp":  # HSDP shards over its shard group only (plan.shard_size = dp_shard)
        return (p + g + o) * held / plan.shard_size
    if flavour == "zero1":
        return (p + g) * held + o * held / plan.dp
    return (p + g + o) * held


def ddp_bucket_estimate(job: Job) -> float:
    """Bytes of DDP's gradient buckets on the rank holding the most: DDP (and ZeRO-1, which wraps
    it) keeps flat fp32 bucket tensors the size of every gradient for its all-reduce — a second
    gradient-sized buffer beside ``.grad``, since benchbench's DDP does not set
    ``gradient_as_bucket_view`` (docs/METRICS.md, ``grad_bytes``); 0 for the other flavours."""
    return 4.0 * params_held(job) if dp_flavour(job.plan) in ("ddp", "zero1") else 0.0


# ---------------------------------------------------------------------------- activations


def gpt_layer_activations(s: int, b: int, h: int, a: int, tp: int, saving: Saving = FP32) -> float:
    """Bytes one block saves for backward over b sequences of s tokens: Korthikanti et al.'s
    per-layer count (16-bit: s·b·h·(34 + 5·a·s/h); with tensor parallelism s·b·h·(10 + 24/t +
    5·a·s/(h·t)); with sequence parallelism s·b·h·(34 + 5·a·s/h)/t) without their dropout masks
    (this model has no dropout: −2·s·b·h, −a·s²·b) and without the attention matrices (fused
    scaled-dot-product attention keeps no s × s softmax: −4·a·s²·b), stored as ``saving`` says
    (:class:`~benchbench.models.formulas.Saving`): each LayerNorm's input and its mean and 1/std
    (b·s each) in the stream's dtype, split by tp under SP (the paper's LayerNorm region); each
    LayerNorm's output as the matmuls reading it save it (q, k, v: 3; fc1: 1), whole; the split
    q, k, v, attention output (proj's input), fc1 output and GELU output (12·s·b·h / tp) in the
    matmul dtype; the attention's fp32 log-sum-exp (a/t·b·s). fp32: 4·s·b·h·(4 + 12/t) + 4·(4·b·s
    + a/t·b·s), the paper's 16-bit 10 + 24/t with no dropout in 4-byte elements."""
    sv, r = saving, saving.region(tp)
    norms = 2 * (sv.stream * s * b * h + 2 * sv.stream * b * s) / r
    norm_outputs = s * b * h * (sv.norm_output(3) + sv.norm_output(1))
    return norms + norm_outputs + sv.matmul * 12 * s * b * h / tp + 4 * (a // tp) * b * s


def checkpointed_layers(job: Job) -> set[int]:
    """Indices of the blocks the plan's activation checkpointing wraps (any model with ``layers`` blocks)."""
    names = [str(i) for i in range(int(job.model_cfg["layers"]))]
    return {int(n) for n in checkpointed_blocks(names, job.plan.activation_checkpoint, job.plan.ac_every)}


def gpt_activation_estimate(job: Job, stages: list[int], b: int, forwards: int) -> float:
    """Saved bytes of one step on a gpt rank holding ``stages``, over ``forwards`` forward passes
    (micro-batches or accumulation steps) of b sequences in all, stored as the job saves them
    (:func:`saving`). A checkpointed block (:func:`checkpointed_layers`) keeps only its input,
    s·b·h elements in the stream's dtype, / tp under SP (Korthikanti et al. §5 and Table 2: full
    recomputation stores 2·s·b·h 16-bit bytes per layer, 2·s·b·h/t with SP); the others
    :func:`gpt_layer_activations`. Outside the blocks: token and target indices (int64, b·s
    each), one position index per forward (s); on the last stage the final LayerNorm (as a
    block's), the head's input as its matmul saves it, the log-softmax of the logits (s·b·V:
    Korthikanti et al.'s 4·s·b·V "cross entropy" term, fp32) and its scalar total weight per
    forward."""
    c = job.model_cfg
    layers, h, a, v, s = (int(c[k]) for k in ("layers", "hidden", "heads", "vocab", "seq_len"))
    n = job.plan.pp * job.plan.virtual_stages
    kept, sv, tp = checkpointed_layers(job), saving(job), job.plan.tp
    r = sv.region(tp)
    out = 0.0
    for st in stages:
        mine = range(st * layers // n, (st + 1) * layers // n)
        out += sum(sv.stream * s * b * h / r if i in kept else gpt_layer_activations(s, b, h, a, tp, sv) for i in mine)
        out += 8 * b * s + 8 * s * forwards if st == 0 else 0
        if st == n - 1:
            final_norm = (sv.stream * s * b * h + 2 * sv.stream * b * s) / r + sv.norm_output(1) * s * b * h
            out += final_norm + 4 * s * b * v + 8 * b * s + 4 * forwards
    return out


def mlp_activation_estimate(cfg: dict[str, Any], b: int) -> float:
    """Saved fp32 bytes of one MLP step on b samples: the input (w), each layer's Linear output
    (GELU's input) and GELU output (the next Linear's input), the head's output and the target
    (out_dim each, kept by the MSE loss): 4·b·(w·(1 + 2·depth) + 2·out_dim)."""
    w, depth, out_dim = (int(cfg[k]) for k in ("width", "depth", "out_dim"))
    return 4.0 * b * (w * (1 + 2 * depth) + 2 * out_dim)


def fsdp_wraps(job: Job) -> bool:
    """Whether the plan's FSDP2 wraps the model (as :func:`benchbench.strategies.parallelize.parallelize`
    decides: an fsdp flavour with dp > 1 or cp > 1, or alone)."""
    plan = job.plan
    return dp_flavour(plan) == "fsdp" and (plan.dp > 1 or plan.cp > 1 or (plan.tp == 1 and plan.pp == 1))


def saving(job: Job) -> Saving:
    """How ``job``'s forward stores saved tensors (:class:`~benchbench.models.formulas.Saving`):
    autocast for bf16 jobs; a bf16 residual stream where FSDP2 wraps the model with bf16
    parameters; the norm region split under sequence parallelism."""
    bf16 = job.dtype == "bf16"
    return Saving(autocast=bf16, stream=2 if bf16 and fsdp_wraps(job) else 4, sp=job.plan.sequence_parallel)


#: Architectures whose activation formulas follow :func:`saving` (bf16, sequence parallelism);
#: the others are derived for fp32 without SP only.
SAVING_AWARE = ("gpt", "llama")


def stage_activations(job: Job, stages: list[int], b: float, forwards: int) -> float | None:
    """Saved bytes of ``forwards`` forward passes of b samples in all on a rank holding pipeline
    ``stages``; ``None`` where not derived: an architecture that gives no estimate (a custom
    model), or a bf16 or sequence-parallel job of one outside :data:`SAVING_AWARE`."""
    arch = job.model_cfg["arch"]
    if saving(job) != FP32 and arch not in SAVING_AWARE:
        return None
    if arch == "mlp":
        return mlp_activation_estimate(job.model_cfg, int(b))
    if arch == "gpt":
        return gpt_activation_estimate(job, stages, int(b), forwards)
    estimate = ARCHITECTURES[arch].activations
    if estimate is None:
        return None
    n = job.plan.pp * job.plan.virtual_stages
    kept = frozenset(checkpointed_layers(job))
    if arch == "llama":
        return estimate(job.model_cfg, stages, n, int(b), forwards, job.plan.tp, kept, saving(job))
    return estimate(job.model_cfg, stages, n, int(b), forwards, job.plan.tp, kept)


def batch_input_bytes(job: Job, stages: list[int], b: float) -> float:
    """Bytes of the step's batch tensors that a rank's ``stages`` save, b samples: a sequence
    model's token indices on the first stage and targets on the last (int64, b·s each), an
    mlp's input and target (fp32), a ViT's targets (int64). A micro-batch's are views of the
    rank's whole batch, so the storage held is the whole batch's whenever any is saved."""
    c, n = job.model_cfg, job.plan.pp * job.plan.virtual_stages
    if c["arch"] == "mlp":
        return 4.0 * b * (int(c["width"]) + int(c["out_dim"]))
    per_sample = 8.0 * int(c["seq_len"]) if "seq_len" in c else 0.0
    first = per_sample if 0 in stages else 0.0
    last = (per_sample if "seq_len" in c else 8.0) if n - 1 in stages else 0.0
    return b * (first + last)


def activation_estimate(job: Job) -> float | None:
    """Saved-activation bytes of one step on the rank saving the most, every forward of the step
    added up (the measured ``activation_bytes``), in the job's dtype, tensor- and
    sequence-parallel split (:func:`saving`); ``None`` where :func:`stage_activations` is."""
    b = job.global_batch // job.plan.dp
    forwards = job.plan.micro_batches if job.plan.pp > 1 else job.plan.accum_steps
    totals = [stage_activations(job, st, b, forwards) for st in rank_stages(job)]
    return None if None in totals else max(t for t in totals if t is not None)


def held_peak(order: list[tuple[int, bool]], unit: dict[int, float], extra: dict[int, float] | None = None) -> float:
    """The most a rank holds while it runs ``order`` (stage, is_forward), a forward of stage s
    saving ``unit[s]`` and its backward releasing it; with ``extra``, a backward of stage s first
    holds ``extra[s]`` more beside what is saved (the loss's gradients: :func:`loss_transient`)."""
    held = peak = 0.0
    for stage, forward in order:
        if not forward and extra:
            peak = max(peak, held + extra.get(stage, 0.0))
        held += unit[stage] if forward else -unit[stage]
        peak = max(peak, held)
    return peak


def loss_transient(job: Job, b: float) -> float:
    """Bytes the loss's backward holds beside the saved tensors, on the last stage, for b samples:
    a sequence model's cross entropy makes two fp32 gradients as large as the logits — of the
    log-probabilities (``nll_loss``'s backward) and of the logits (``log_softmax``'s) — before the
    head's backward frees them: 8·s·b·V bytes, in fp32 and in bf16 jobs (autocast computes the loss
    in fp32). Measured on CPU (the process's peak resident set, ``VmHWM``, above the saved bytes, a
    1-layer gpt with s = 64: V = 50,000, b = 8 and 16, 7.95 to 8.03 bytes per s·b·V; V = 20,000,
    b = 8, 7.88 (fp32) and 7.92 (bf16): tests/test_memory.py).
    Other architectures: 0 (their outputs are b·classes or b·out_dim wide)."""
    c = job.model_cfg
    if "seq_len" not in c or "vocab" not in c:
        return 0.0
    return 8.0 * int(c["seq_len"]) * b * int(c["vocab"])


def activation_peaks(job: Job) -> tuple[float, float] | None:
    """(saved-activation bytes held at once, the same with the loss's transient gradients at the
    moment they are made) on the rank holding the most: :func:`activation_peak_estimate` and the
    step's peak of activation memory (:func:`memory_estimate`). ``None`` where
    :func:`activation_estimate` is."""
    if activation_estimate(job) is None:
        return None
    plan = job.plan
    b = job.global_batch // plan.dp
    last = plan.pp * plan.virtual_stages - 1
    if plan.pp == 1:
        mb = b / plan.accum_steps
        one = (
            (stage_activations(job, [0], mb, 1) or 0.0)
            - batch_input_bytes(job, [0], mb)
            + batch_input_bytes(job, [0], b)
        )
        return one, one + loss_transient(job, mb)
    mb = b / plan.micro_batches
    saved, step = [], []
    for rank, stages in enumerate(rank_stages(job)):
        unit = {st: (stage_activations(job, [st], mb, 1) or 0.0) - batch_input_bytes(job, [st], mb) for st in stages}
        extra = {last: loss_transient(job, mb)} if last in stages else {}
        order = compute_order(plan.schedule, rank, plan.pp, plan.micro_batches, plan.virtual_stages)
        whole = batch_input_bytes(job, stages, b)
        if order is None:  # all m micro-batches held: an upper bound
            held = sum(plan.micro_batches * u for u in unit.values())
            saved.append(held + whole)
            step.append(held + whole + sum(extra.values()))
            continue
        saved.append(held_peak(order, unit) + whole)
        step.append(held_peak(order, unit, extra) + whole)
    return max(saved), max(step)


def activation_peak_estimate(job: Job) -> float | None:
    """The most saved-activation bytes a rank holds at once in a step (the measured
    ``activation_peak_bytes``), on the rank holding the most: without a pipeline one forward
    (a gradient-accumulation micro-step: the rank's batch / ``accum_steps``); with one, each
    micro-batch of each stage saves what one forward of global / (dp·m) samples saves and
    :func:`~benchbench.spec.schedules.compute_order` says which the schedule holds at once —
    GPipe all m, 1F1B min(m, p − rank), interleaved 1F1B its warm-up + 1. Schedules whose order is
    not derived (those splitting the backward) count all m (an upper bound). The batch's token
    and target tensors count whole (:func:`batch_input_bytes`). ``None`` where
    :func:`activation_estimate` is."""
    peaks = activation_peaks(job)
    return None if peaks is None else peaks[0]


# ---------------------------------------------------------------------------- the rank's total


@dataclass(frozen=True)
class MemoryEstimate:
    """The per-rank memory of a job on the rank holding the most (:func:`memory_estimate`)."""

    model_state_bytes: float  # :func:`model_state_estimate`
    activation_bytes: float | None  # :func:`activation_peak_estimate`, or its fp32 non-SP upper bound
    ddp_bucket_bytes: float  # :func:`ddp_bucket_estimate`
    total_bytes: float  # model state + activations at the step's peak (+ the loss's transient) + DDP's buckets
    note: str  # how the total was made, for people ("" when plain)
    transient_bytes: float = 0.0  # the step's activation peak above activation_bytes (:func:`loss_transient`)


def memory_estimate(job: Job) -> MemoryEstimate:
    """Model state (:func:`model_state_estimate`), the saved activations held at the peak
    (:func:`activation_peak_estimate`) and the loss's transient gradients where they raise the
    step's peak (:func:`activation_peaks`, :func:`loss_transient`) of the rank holding the most,
    and the total, which adds DDP's gradient buckets (:func:`ddp_bucket_estimate`); where the
    activation estimate is not derived (bf16 or sequence parallel on an architecture outside
    :data:`SAVING_AWARE`) the fp32, non-SP figure of the same job stands in as an upper bound (said
    in the note). Not counted: a checkpointed block's recompute, FSDP2's unsharded units, the
    runtime (docs/METRICS.md)."""
    state, buckets = model_state_estimate(job), ddp_bucket_estimate(job)
    peaks = activation_peaks(job)
    notes = [f"+ DDP gradient buckets {buckets / 1e9:.1f} GB"] if buckets else []
    if peaks is None:
        peaks = activation_peaks(job.replace(dtype="fp32", plan=replace(job.plan, sequence_parallel=False)))
        notes.append("activations: fp32 non-SP upper bound")
    act, step = peaks if peaks is not None else (None, 0.0)
    transient = step - (act or 0.0)
    if transient:
        notes.append(f"+ loss gradients {transient / 1e9:.1f} GB at the step's peak")
    return MemoryEstimate(
        model_state_bytes=state,
        activation_bytes=act,
        ddp_bucket_bytes=buckets,
        total_bytes=state + max(step, act or 0.0) + buckets,
        note="; ".join(notes),
        transient_bytes=transient,
    )


# ---------------------------------------------------------------------------- the limit


def host_memory_bytes() -> float:
    """This host's physical memory (``os.sysconf``: page size × physical pages), bytes."""
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


@dataclass(frozen=True)
class MemoryLimit:
    """The memory one rank of a job may use (:func:`rank_memory_limit`)."""

    bytes: float
    source: str  # the limit and where it comes from, for people ("memory_gb = 80")


def rank_memory_limit(job: Job) -> MemoryLimit | None:
    """The bytes one rank may use: on a GPU profile its ``memory_gb`` per device (``None`` where it
    gives none); on a CPU profile the host's memory — the profile's ``memory_gb`` (a host's, there),
    else this host's RAM (:func:`host_memory_bytes`: a CPU profile runs its ranks on the machine
    that expands the study, or on nodes like it) — shared by the ranks on one host,
    min(world size, ``devices_per_node``). No runtime reserve is taken off (the process's Python and
    torch runtime, ~300 MB per CPU rank, docs/METRICS.md ``peak_mem_mb``; not modelled)."""
    hw = job.hardware_cfg
    if hw.device == "cuda":
        return MemoryLimit(hw.memory_gb * 1e9, f"memory_gb = {hw.memory_gb:g}") if hw.memory_gb else None
    per_host = max(1, min(job.world_size, hw.devices_per_node))
    host, where = (
        (hw.memory_gb * 1e9, "the profile's memory_gb") if hw.memory_gb else (host_memory_bytes(), "this host's RAM")
    )
    per_rank = host / per_host
    return MemoryLimit(
        per_rank, f"{per_rank / 1e9:.1f} GB per rank: {where}, {host / 1e9:.1f} GB, over {per_host} rank(s)"
    )
