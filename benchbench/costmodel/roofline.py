"""Compute from a roofline, per operation class, for hardware known only by its specs.

A transformer's forward and backward on one rank are summed over the operations it runs
(:func:`block_ops`, :func:`head_ops`), each timed at the class's attainable share of the device's
peak (the profile's ``attainable``, each fraction with its source):

* **GEMMs** at their M, N, K (M = tokens of the micro-batch; N or K split by tp where the layer is):
  t = max(2MNK / (peak · gemm), (MK + KN + MN) · bytes / (HBM · hbm)) — Williams, Waterman &
  Patterson, "Roofline", CACM 2009. Backward runs two GEMMs of the forward's FLOPs (the input's
  gradient, M×N·N×K, and the weight's, K×M·M×N), each timed at its own shape.
* **Attention** (fused SDPA): its FLOPs at peak · attention — forward as the models count them
  (scores and weighted sum, causal masking halved), backward 2.5 × the forward's (Dao 2023,
  FlashAttention-2, §4.1: the backward pass recomputes the scores and runs five matmuls to the
  forward's two).
* **Memory-bound** elementwise ops and norms at HBM · hbm, bytes moved per block from the
  activations' sizes (:func:`block_ops`), backward twice the forward's bytes (each op reads its
  output's gradient and its saved input, and writes its input's gradient); the loss's passes over
  the logits (:func:`head_ops`).

Not modelled: kernel launch and Python overheads, GEMM wave quantisation beyond the fraction,
overlap of memory-bound ops with GEMMs. The fractions are not fitted to the training runs the
prediction is compared with (docs/METRICS.md, "Predictions").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Operation classes a profile's ``attainable`` gives a fraction for.
CLASSES = ("gemm", "attention", "hbm")


@dataclass(frozen=True)
class Gemm:
    """One matmul: (M × K) · (K × N)."""

    name: str
    m: float
    n: float
    k: float
    fp8: bool = False  # a float8 plan's block matmul (torchao): at the fp8 peak


@dataclass(frozen=True)
class Ops:
    """The operations of one forward pass on one rank: GEMMs, attention FLOPs, bytes of the
    memory-bound ops."""

    gemms: list[Gemm]
    attention_flops: float
    memory_bytes: float


@dataclass(frozen=True)
class Device:
    """What the roofline needs of a device: peak FLOP/s of the job's precision, HBM bytes/s, and
    the attainable fraction of each operation class (:data:`CLASSES`)."""

    peak_flops: float
    hbm_bytes_per_s: float  # attained: the datasheet's × the hbm fraction
    attainable: dict[str, float]
    fp8_flops: float | None = None  # the fp8 peak, for float8 plans' block matmuls

    def gemm_s(self, g: Gemm, elt: int) -> float:
        """Roofline seconds of one GEMM with ``elt``-byte operands (1 byte at fp8)."""
        fp8 = g.fp8 and bool(self.fp8_flops)
        peak = self.fp8_flops if fp8 and self.fp8_flops else self.peak_flops
        compute = 2 * g.m * g.n * g.k / (peak * self.attainable["gemm"])
        memory = (g.m * g.k + g.k * g.n + g.m * g.n) * (1 if fp8 else elt) / self.hbm_bytes_per_s
        return max(compute, memory)

    def seconds(self, ops: Ops, elt: int) -> tuple[float, float]:
        """Forward and backward seconds of ``ops``."""
        fwd_gemm = sum(self.gemm_s(g, elt) for g in ops.gemms)
        grads = [(Gemm(g.name, g.m, g.k, g.n, g.fp8), Gemm(g.name, g.k, g.n, g.m, g.fp8)) for g in ops.gemms]
        bwd_gemm = sum(self.gemm_s(a, elt) + self.gemm_s(w, elt) for a, w in grads)
        attn = ops.attention_flops / (self.peak_flops * self.attainable["attention"])
        mem = ops.memory_bytes / self.hbm_bytes_per_s
        return fwd_gemm + attn + mem, bwd_gemm + 2.5 * attn + 2 * mem


def supported(model_cfg: dict[str, Any]) -> bool:
    """Whether :func:`model_ops` knows the architecture's operations (gpt, llama, vit)."""
    return model_cfg["arch"] in ("gpt", "llama", "vit")


# long: one table of the operations of each of three architectures, kept side by side to compare
def block_ops(cfg: dict[str, Any], samples: float, tp: int, stream: int, elt: int, fp8: bool = False) -> Ops:
    """One block's forward on ``samples`` sequences (images), its weights split over ``tp`` ranks
    as the tensor-parallel plans split them (q, k, v, fc1 / w1, w3 by columns; proj, fc2 / o, w2
    by rows), activations of ``elt`` bytes out of the matmuls and ``stream`` bytes in the residual
    stream. Memory-bound bytes per token, each op reading its inputs and writing its output: two
    norms (read and write h, in the stream's dtype), two residual additions (read 2h, write h),
    and the gpt's and ViT's GELU (read and write the hidden m / tp); Llama's rotary embedding as
    ``benchbench.models.llama.rotary`` runs it eagerly on q and k — a cast to fp32 (read ``elt``,
    write 4 bytes per element), six products and sums on fp32 halves (each reads two halves and
    writes one: 36), the stack (8) and the cast back (4 + ``elt``): 56 bytes per element at bf16 —,
    k and v repeated to every query head (read kv, write h), the attention output's transpose
    copy (read and write h) and SwiGLU (silu: read and write f / tp; product: read 2f / tp, write
    f / tp)."""
    arch, h = cfg["arch"], int(cfg["hidden"])
    if arch == "vit":
        t = 1 + (int(cfg["image_size"]) // int(cfg["patch"])) ** 2
    else:
        t = int(cfg["seq_len"])
    m = samples * t
    norms_residual = stream * (2 * 2 * h + 2 * 3 * h)
    if arch == "llama":
        f, kv = int(cfg["ffn_hidden"]), int(cfg["kv_heads"]) * (h // int(cfg["heads"]))
        gemms = [
            Gemm("q", m, h / tp, h),
            Gemm("k", m, kv / tp, h),
            Gemm("v", m, kv / tp, h),
            Gemm("o", m, h, h / tp),
            Gemm("w1", m, f / tp, h),
            Gemm("w3", m, f / tp, h),
            Gemm("w2", m, h, f / tp),
        ]
        rotary = 56 * (h + kv) / tp  # benchbench's rotary(): see the docstring
        gqa = elt * 2 * (kv + h) / tp  # k and v repeated to every query head: read kv, write h, each
        per_token = norms_residual + rotary + gqa + elt * (2 * h / tp + 2 * f / tp + 3 * f / tp)
        attention = samples * 2.0 * t * t * h / tp  # causal: half of 4T²h
    else:
        width = int(cfg["mlp_hidden"]) if arch == "vit" else 4 * h
        gemms = [
            Gemm("q", m, h / tp, h),
            Gemm("k", m, h / tp, h),
            Gemm("v", m, h / tp, h),
            Gemm("proj", m, h, h / tp),
            Gemm("fc1", m, width / tp, h),
            Gemm("fc2", m, h, width / tp),
        ]
        per_token = norms_residual + elt * 2 * width / tp
        attention = samples * (4.0 if arch == "vit" else 2.0) * t * t * h / tp  # ViT: bidirectional
    casts = 0.0
    if fp8:  # torchao's dynamic scaling: each operand's amax (read elt) and cast (read elt, write 1)
        gemms = [Gemm(g.name, g.m, g.n, g.k, True) for g in gemms]
        casts = sum((2 * elt + 1) * (g.m * g.k + g.k * g.n) for g in gemms)  # inputs and weights
    return Ops(gemms, attention, m * per_token + casts)


def head_ops(cfg: dict[str, Any], samples: float, tp: int, elt: int) -> Ops:
    """The head's forward: the output GEMM (vocabulary or classes split over tp) and, for sequence
    models, the loss's passes over the logits: read them (``elt`` bytes), write and read the fp32
    log-softmax, 4 + 4 bytes per logit (the ViT's head sees one token per image: negligible)."""
    h = int(cfg["hidden"])
    if cfg["arch"] == "vit":
        return Ops([Gemm("head", samples, int(cfg["classes"]) / tp, h)], 0.0, 0.0)
    m, v = samples * int(cfg["seq_len"]), int(cfg["vocab"]) / tp
    return Ops([Gemm("head", m, v, h)], 0.0, m * v * (elt + 8))


def model_seconds(
    cfg: dict[str, Any], samples: float, tp: int, stream: int, elt: int, device: Device, fp8: bool = False
) -> tuple[float, float]:
    """Forward and backward seconds of the whole model on one rank at tp shard 1/``tp``, × tp:
    the unsplit model's time at the shard's shapes, which the cost model then scales by the rank's
    FLOP share (its stages, / tp), as it does measured times. ``fp8``: a float8 plan — the blocks'
    matmuls at the device's fp8 peak with torchao's casts (the head stays in high precision, as
    :mod:`benchbench.strategies.float8` keeps it)."""
    layers = int(cfg["layers"])
    bf, bb = device.seconds(block_ops(cfg, samples, tp, stream, elt, fp8), elt)
    hf, hb = device.seconds(head_ops(cfg, samples, tp, elt), elt)
    return tp * (layers * bf + hf), tp * (layers * bb + hb)
