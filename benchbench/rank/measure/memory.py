"""Memory that shows sharding: what one rank holds, measured exactly, next to what theory says.

Measured (per rank; the job reports the max over ranks):

* :func:`model_state_bytes` — the bytes of every tensor the rank holds as model state after a
  step: parameters (a DTensor's local shard), gradients, optimizer state (every tensor in
  ``optimizer.state``, and in ZeRO-1's inner, sharded optimizer). Counted by storage, each once
  (DDP's ``gradient_as_bucket_view``, FSDP2's padded shards and views share storages);
* :class:`SavedActivations` — the bytes autograd saves for backward during one step
  (``saved_tensors_hooks``): storages counted once, parameters and their views/casts not counted;
* :func:`reset_peak` / :func:`read_peak_mb` — the process peak after set-up and warm-up: on CPU
  the kernel's high-water mark of the resident set (VmHWM), reset by writing ``5`` to
  ``/proc/self/clear_refs``; on CUDA the allocator's peak after ``reset_peak_memory_stats``.

Estimated (analytic, no model built):

* :func:`model_state_estimate` — bytes per parameter (:data:`BYTES_PER_PARAM`; Rajbhandari et al.,
  "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", SC 2020, §3.1 and §5)
  times the parameters the rank holds, divided as its plan shards them: ZeRO-1 the optimizer state
  over dp (P_os), FSDP2 (ZeRO-3, P_os+g+p) all three over dp, tensor parallel the TP-split weights
  over tp, a pipeline rank its stages' parameters;
* :func:`activation_estimate` — saved activations per step, per tensor, after the accounting of
  Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models", MLSys 2023
  (arXiv:2205.05198, §4.1), adapted to this model (docs/METRICS.md).
"""

from __future__ import annotations

import resource
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

CLEAR_REFS = "/proc/self/clear_refs"
STATUS = "/proc/self/status"

# --------------------------------------------------------------------------------- peak memory


def reset_peak(device: torch.device) -> str:
    """Reset the process's peak memory now; returns the source :func:`read_peak_mb` will read:
    ``cuda_allocator``, ``rss_hwm_reset`` (the kernel's peak RSS, reset), or ``rss`` where
    ``/proc/self/clear_refs`` is not writable (getrusage's peak since the process started)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_allocator"
    try:
        with open(CLEAR_REFS, "w") as f:
            f.write("5")  # Linux: reset the peak resident set size to the current one
    except OSError:
        return "rss"
    return "rss_hwm_reset"


def read_peak_mb(device: torch.device, source: str) -> float:
    """The peak since :func:`reset_peak` (which returned ``source``), in MiB."""
    if source == "cuda_allocator":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if source == "rss_hwm_reset":
        with open(STATUS) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ------------------------------------------------------------------------- model-state bytes


def local(t: torch.Tensor) -> torch.Tensor:
    """The part of ``t`` this rank holds: a DTensor's local shard, else ``t``."""
    return t._local_tensor if hasattr(t, "_local_tensor") else t


class StorageCounter:
    """Bytes of distinct storages: a storage seen twice (views, bucket views) counts once."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def add(self, t: torch.Tensor | None) -> int:
        """Count ``t``'s storage if not seen yet; returns the bytes added."""
        if t is None or not isinstance(t, torch.Tensor):
            return 0
        storage = local(t).untyped_storage()
        if storage.nbytes() == 0 or storage.data_ptr() in self.seen:
            return 0
        self.seen.add(storage.data_ptr())
        return storage.nbytes()


def _optimizers(optimizer: torch.optim.Optimizer) -> list[torch.optim.Optimizer]:
    """The optimizer and, for ZeRO-1 (``ZeroRedundancyOptimizer``), the inner one holding the shard's state."""
    inner = getattr(optimizer, "optim", None)
    return [optimizer, *([inner] if isinstance(inner, torch.optim.Optimizer) else [])]


def model_state_bytes(modules: Iterable[nn.Module], optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of parameters, gradients and optimizer state this rank holds (storages counted once,
    in that order), and their sum: ``param_bytes``, ``grad_bytes``, ``optim_state_bytes``,
    ``model_state_bytes``."""
    counter = StorageCounter()
    params = [p for m in modules for p in m.parameters()]
    out = {
        "param_bytes": sum(counter.add(p) for p in params),
        "grad_bytes": sum(counter.add(p.grad) for p in params),
        "optim_state_bytes": sum(
            counter.add(v) for opt in _optimizers(optimizer) for s in opt.state.values() for v in s.values()
        ),
    }
    out["model_state_bytes"] = sum(out.values())
    return out


# ------------------------------------------------------------------------------- activations

#: Autograd nodes that pass a parameter through unchanged in value (views, casts): a tensor whose
#: history is only these, back to a parameter, is the parameter (or autocast's copy), not an activation.
_PASS_THROUGH = {
    "TBackward0",
    "TransposeBackward0",
    "ViewBackward0",
    "AliasBackward0",
    "ToCopyBackward0",
    "PermuteBackward0",
    "ExpandBackward0",
    "UnsafeViewBackward0",
}


def param_derived(t: torch.Tensor) -> bool:
    """Whether ``t`` is a parameter, a view of one, or a cast of one (autocast's bf16 copy)."""
    if isinstance(t, nn.Parameter) or isinstance(t._base, nn.Parameter):
        return True
    fn = t.grad_fn
    while fn is not None and type(fn).__name__ in _PASS_THROUGH:
        nxt = [f for f, _ in fn.next_functions if f is not None]
        if len(nxt) != 1:
            return False
        fn = nxt[0]
    return fn is not None and type(fn).__name__ == "AccumulateGrad"


class SavedActivations:
    """Context manager: the bytes autograd saves for backward while it is open (every forward in
    it, e.g. all micro-batches of a pipeline step), storages counted once. It keeps each storage
    alive until it closes, so that a freed address reused by a later micro-batch is not taken for
    one already counted (memory is held longer inside: measure in an untimed step)."""

    def __init__(self) -> None:
        self.bytes = 0
        self._held: list[torch.UntypedStorage] = []
        self._counter = StorageCounter()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if not param_derived(t):
            added = self._counter.add(t)
            if added:
                self.bytes += added
                self._held.append(local(t).untyped_storage())
        return t

    def __enter__(self) -> SavedActivations:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)
        self._held.clear()


def activation_bytes(trainer: Any, batch: tuple[torch.Tensor, ...]) -> int:
    """Bytes saved for backward in one extra, untimed optimizer step of ``trainer`` on ``batch``."""
    with SavedActivations() as saved:
        trainer.train_step(*batch)
    return saved.bytes


def measure(trainer: Any, batch: tuple[torch.Tensor, ...], device: torch.device, peak_source: str) -> dict[str, Any]:
    """Right after the timed steps, in this order: the peak since :func:`reset_peak` (which
    returned ``peak_source``), this rank's model-state bytes (gradients and optimizer state in
    place), then the saved activations of one extra, untimed step."""
    figures: dict[str, Any] = {"peak_mem_mb": read_peak_mb(device, peak_source), "peak_mem_source": peak_source}
    figures.update({k: float(v) for k, v in model_state_bytes(trainer.modules, trainer.optimizer).items()})
    figures["activation_bytes"] = float(activation_bytes(trainer, batch))
    return figures


# --------------------------------------------------------------------------------- estimates

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


def _rank_stages(job: Any) -> list[list[int]]:
    """The pipeline stages of each pipeline rank ([[0]] without a pipeline)."""
    from benchbench.spec.schedules import stage_ids

    plan = job.plan
    if plan.pp == 1:
        return [[0]]
    return [stage_ids(plan.schedule, r, plan.pp, plan.virtual_stages) for r in range(plan.pp)]


def _params_held(job: Any) -> float:
    """Parameters of the rank holding the most (max over pipeline ranks), before data-parallel
    sharding."""
    from benchbench.models.registry import model_info

    plan = job.plan
    n = plan.pp * plan.virtual_stages
    if job.model_cfg["arch"] == "gpt":
        return max(gpt_params_held(job.model_cfg, st, n, plan.tp) for st in _rank_stages(job))
    if job.model_cfg["arch"] == "mlp":
        return float(model_info(job.model_cfg).params)
    from benchbench.costmodel.tensors import stage_tensors

    return float(
        max(sum(t.numel for s in st for t in stage_tensors(job.model_cfg, s, n, plan.tp)) for st in _rank_stages(job))
    )


def _dp_flavour_applied(plan: Any) -> str:
    wrap_dp = plan.dp > 1 or (plan.tp == 1 and plan.pp == 1)  # as parallelize applies it
    return plan.dp_flavour if wrap_dp else "none"


def model_state_estimate(job: Any, kind: str = "fp32-adamw") -> float:
    """Model-state bytes of the rank holding the most (max over pipeline ranks), as the plan
    shards them: ZeRO-1 (P_os) the optimizer state / dp; FSDP2 (ZeRO-3, P_os+g+p) all / dp;
    DDP, naive and single none. Not counted: AdamW's step counters (4 bytes per parameter tensor
    whose state the rank holds) and FSDP2's padding of dim 0 to a multiple of dp."""
    plan = job.plan
    p, g, o = BYTES_PER_PARAM[kind]
    held = _params_held(job)
    flavour = _dp_flavour_applied(plan)
    if flavour == "fsdp":  # HSDP shards over its shard group only (plan.shard_size = dp_shard)
        return (p + g + o) * held / plan.shard_size
    if flavour == "zero1":
        return (p + g) * held + o * held / plan.dp
    return (p + g + o) * held


def ddp_bucket_estimate(job: Any) -> float:
    """Bytes of DDP's gradient buckets on the rank holding the most: DDP (and ZeRO-1, which wraps
    it) keeps flat fp32 bucket tensors the size of every gradient for its all-reduce — a second
    gradient-sized buffer beside ``.grad``, since benchbench's DDP does not set
    ``gradient_as_bucket_view`` (docs/METRICS.md, ``grad_bytes``); 0 for the other flavours."""
    return 4.0 * _params_held(job) if _dp_flavour_applied(job.plan) in ("ddp", "zero1") else 0.0


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


def checkpointed_layers(job: Any) -> set[int]:
    """Indices of the blocks the plan's activation checkpointing wraps (any model with ``layers`` blocks)."""
    from benchbench.spec.plan import checkpointed_blocks

    names = [str(i) for i in range(int(job.model_cfg["layers"]))]
    return {int(n) for n in checkpointed_blocks(names, job.plan.activation_checkpoint, job.plan.ac_every)}


def gpt_activation_estimate(job: Any, stages: list[int], b: int, forwards: int) -> float:
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


def activation_estimate(job: Any) -> float | None:
    """Saved-activation bytes of one step on the rank saving the most; ``None`` where not derived:
    bf16 jobs (which tensors autocast saves in bf16 is not modelled), sequence parallelism and
    architectures that give no estimate (a custom model). The architectures of
    :mod:`benchbench.models.presets` give their own (``Architecture.activations``)."""
    if job.dtype != "fp32" or job.plan.sequence_parallel:
        return None
    b = job.global_batch // job.plan.dp
    if job.model_cfg["arch"] == "mlp":
        return mlp_activation_estimate(job.model_cfg, b)
    forwards = job.plan.micro_batches if job.plan.pp > 1 else job.plan.accum_steps
    if job.model_cfg["arch"] == "gpt":
        return max(gpt_activation_estimate(job, st, b, forwards) for st in _rank_stages(job))
    from benchbench.models.registry import ARCHITECTURES

    estimate = ARCHITECTURES[job.model_cfg["arch"]].activations
    if estimate is None:
        return None
    n = job.plan.pp * job.plan.virtual_stages
    kept = frozenset(checkpointed_layers(job))
    return max(estimate(job.model_cfg, st, n, b, forwards, job.plan.tp, kept) for st in _rank_stages(job))
