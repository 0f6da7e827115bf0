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
  (arXiv:2205.05198, §4.1), adapted to this model (docs/METRICS.md);
* :func:`memory_estimate` — the three together, the per-rank figure a plan is checked against a
  device's memory with (:class:`MemoryEstimate`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from benchbench.costmodel.data_parallel import dp_flavour
from benchbench.costmodel.tensors import stage_tensors
from benchbench.models.registry import ARCHITECTURES, model_info
from benchbench.spec.job import Job
from benchbench.spec.plan import checkpointed_blocks
from benchbench.spec.schedules import stage_ids

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


def gpt_layer_activations(s: int, b: int, h: int, a: int, tp: int) -> float:
    """fp32 bytes one block saves for backward over b sequences of s tokens: Korthikanti et al.'s
    per-layer count (16-bit: s·b·h·(34 + 5·a·s/h); with tensor parallelism s·b·h·(10 + 24/t +
    5·a·s/(h·t))) without their dropout masks (this model has no dropout: −2·s·b·h, −a·s²·b) and
    without the attention matrices (fused scaled-dot-product attention keeps no s × s softmax:
    −4·a·s²·b), in 4-byte elements: 16·s·b·h, of which 12·s·b·h split by tp — LayerNorm inputs,
    LayerNorm outputs (the q/k/v and fc1 inputs, one tensor each), and the split q, k, v,
    attention output (proj's input), fc1 output and GELU output (4h each) — plus what the paper
    leaves out: each LayerNorm's mean and 1/std (2·b·s each) and the attention's log-sum-exp
    (a/t·b·s)."""
    return 4 * s * b * h * (4 + 12 / tp) + 4 * (4 * b * s + a // tp * b * s)


def checkpointed_layers(job: Job) -> set[int]:
    """Indices of the blocks the plan's activation checkpointing wraps (any model with ``layers`` blocks)."""
    names = [str(i) for i in range(int(job.model_cfg["layers"]))]
    return {int(n) for n in checkpointed_blocks(names, job.plan.activation_checkpoint, job.plan.ac_every)}


def gpt_activation_estimate(job: Job, stages: list[int], b: int, forwards: int) -> float:
    """Saved bytes of one step on a gpt rank holding ``stages``, over ``forwards`` forward passes
    (micro-batches or accumulation steps) of b sequences in all. A checkpointed block
    (:func:`checkpointed_layers`) keeps only its input, s·b·h fp32 elements (Korthikanti et al.
    §5: full recomputation stores 2·s·b·h 16-bit bytes per layer); the others
    :func:`gpt_layer_activations`. Outside the blocks: token and
    target indices (int64, b·s each), one position index per forward (s); on the last stage the
    final LayerNorm's input and output (s·b·h each, with its mean and 1/std), the log-softmax of
    the logits (s·b·V: Korthikanti et al.'s 4·s·b·V "cross entropy" term, fp32) and its scalar
    total weight per forward."""
    c = job.model_cfg
    layers, h, a, v, s = (int(c[k]) for k in ("layers", "hidden", "heads", "vocab", "seq_len"))
    n = job.plan.pp * job.plan.virtual_stages
    kept = checkpointed_layers(job)
    out = 0.0
    for st in stages:
        mine = range(st * layers // n, (st + 1) * layers // n)
        out += sum(4 * s * b * h if i in kept else gpt_layer_activations(s, b, h, a, job.plan.tp) for i in mine)
        out += 8 * b * s + 8 * s * forwards if st == 0 else 0
        out += 4 * (2 * s * b * h + 2 * b * s + s * b * v) + 8 * b * s + 4 * forwards if st == n - 1 else 0
    return out


def mlp_activation_estimate(cfg: dict[str, Any], b: int) -> float:
    """Saved fp32 bytes of one MLP step on b samples: the input (w), each layer's Linear output
    (GELU's input) and GELU output (the next Linear's input), the head's output and the target
    (out_dim each, kept by the MSE loss): 4·b·(w·(1 + 2·depth) + 2·out_dim)."""
    w, depth, out_dim = (int(cfg[k]) for k in ("width", "depth", "out_dim"))
    return 4.0 * b * (w * (1 + 2 * depth) + 2 * out_dim)


def activation_estimate(job: Job) -> float | None:
    """Saved-activation bytes of one step on the rank saving the most; ``None`` where not derived:
    bf16 jobs (which tensors autocast saves in bf16 is not modelled), sequence parallelism and
    architectures that give no estimate (a custom model). The architectures of
    :mod:`benchbench.models.registry` give their own (``Architecture.activations``)."""
    if job.dtype != "fp32" or job.plan.sequence_parallel:
        return None
    b = job.global_batch // job.plan.dp
    if job.model_cfg["arch"] == "mlp":
        return mlp_activation_estimate(job.model_cfg, b)
    forwards = job.plan.micro_batches if job.plan.pp > 1 else job.plan.accum_steps
    if job.model_cfg["arch"] == "gpt":
        return max(gpt_activation_estimate(job, st, b, forwards) for st in rank_stages(job))
    estimate = ARCHITECTURES[job.model_cfg["arch"]].activations
    if estimate is None:
        return None
    n = job.plan.pp * job.plan.virtual_stages
    kept = frozenset(checkpointed_layers(job))
    return max(estimate(job.model_cfg, st, n, b, forwards, job.plan.tp, kept) for st in rank_stages(job))


# ---------------------------------------------------------------------------- the rank's total


@dataclass(frozen=True)
class MemoryEstimate:
    """The per-rank memory of a job on the rank holding the most (:func:`memory_estimate`)."""

    model_state_bytes: float  # :func:`model_state_estimate`
    activation_bytes: float | None  # :func:`activation_estimate`, or its fp32 non-SP upper bound
    ddp_bucket_bytes: float  # :func:`ddp_bucket_estimate`
    total_bytes: float  # model state + activations + DDP's gradient buckets
    note: str  # how the total was made, for people ("" when plain)


def memory_estimate(job: Job) -> MemoryEstimate:
    """Model state (:func:`model_state_estimate`) and saved activations (:func:`activation_estimate`)
    of the rank holding the most, and the total, which adds DDP's gradient buckets
    (:func:`ddp_bucket_estimate`); where the activation estimate is not derived (bf16, sequence
    parallel) the fp32, non-SP figure of the same job stands in as an upper bound (said in the note)."""
    state, buckets = model_state_estimate(job), ddp_bucket_estimate(job)
    act = activation_estimate(job)
    notes = [f"+ DDP gradient buckets {buckets / 1e9:.1f} GB"] if buckets else []
    if act is None:
        act = activation_estimate(job.replace(dtype="fp32", plan=replace(job.plan, sequence_parallel=False)))
        notes.append("activations: fp32 non-SP upper bound")
    return MemoryEstimate(
        model_state_bytes=state,
        activation_bytes=act,
        ddp_bucket_bytes=buckets,
        total_bytes=state + (act or 0.0) + buckets,
        note="; ".join(notes),
    )
