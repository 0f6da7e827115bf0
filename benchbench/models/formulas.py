"""Analytic formulas of the built-in architectures (no torch, no model built): exact parameter
counts, training FLOPs per sample, per-stage forward FLOPs and saved-activation bytes of mlp, gpt,
llama and vit, and the activation-sized message shapes of a model config (:func:`boundary`).

:data:`benchbench.models.registry.ARCHITECTURES` names them per architecture; the modules that
build each architecture (:mod:`.mlp`, :mod:`.gpt`, :mod:`.llama`, :mod:`.vit`) describe the shapes
these formulas count, and tests/test_models.py and tests/test_archs.py check them against the
built modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Saving:
    """How a job's forward stores the tensors it saves for backward (the activation formulas'
    convention; every rule measured tensor by tensor on CPU, tests/test_archs.py and
    benchmarks/activation_memory.py):

    * ``autocast`` (bf16 jobs): matmul and attention outputs are bf16, and each matmul saves its
      own bf16 cast of an fp32 input (autocast caches casts of parameters, not of activations);
      the attention's log-sum-exp, the log-softmax and the norms' statistics stay fp32 (the
      LayerNorm's in the stream's dtype: CPU autocast leaves ``layer_norm`` alone);
    * ``stream``: bytes of a residual-stream element — 2 where FSDP2's ``MixedPrecisionPolicy``
      gathers bf16 parameters and casts each block's inputs (the embedding output is bf16 too), else 4;
    * ``sp`` (sequence parallelism): a norm's input, its statistics and what it computes inside
      are split by tp (Korthikanti et al. 2022, Table 2: the LayerNorm region / t); the output that
      the matmuls read is gathered, whole.
    """

    autocast: bool = False
    stream: int = 4
    sp: bool = False

    @property
    def matmul(self) -> int:
        """Bytes of a matmul output element."""
        return 2 if self.autocast else 4

    def norm_output(self, readers: int) -> int:
        """Bytes per element of a norm output as the ``readers`` matmuls reading it save it: fp32
        once; under autocast a bf16 cast per reader of an fp32 output, one bf16 of a bf16 output."""
        if not self.autocast:
            return 4
        return 2 * readers if self.stream == 4 else 2

    def region(self, tp: int) -> int:
        """The divisor of the norm region: tp under sequence parallelism, else 1."""
        return tp if self.sp else 1


FP32 = Saving()

# ----------------------------------------------------------------------------------------- MLP


def mlp_params(width: int, depth: int, out_dim: int) -> int:
    """Exact parameter count: weights and biases of every Linear."""
    return depth * (width * width + width) + width * out_dim + out_dim


def mlp_train_flops_per_sample(width: int, depth: int, out_dim: int) -> float:
    """Training FLOPs of one sample: 3 x forward (backward = 2 x forward), forward = 2 FLOPs
    per multiply-accumulate of every Linear weight: ``6 * (depth*width^2 + width*out_dim)``.
    Biases and activations are not counted (they are not matrix work)."""
    return 6.0 * (depth * width * width + width * out_dim)


# ----------------------------------------------------------------------------------------- GPT


def gpt_params(layers: int, hidden: int, heads: int, seq_len: int, vocab: int) -> int:
    """Exact parameter count. Per block: q, k, v, proj (4h^2 + 4h), fc1/fc2 (8h^2 + 5h), two
    LayerNorms (4h): 12h^2 + 13h. Plus embeddings (V + T)h, final LayerNorm 2h, head Vh."""
    del heads  # the split into heads does not change the count
    return layers * (12 * hidden * hidden + 13 * hidden) + (vocab + seq_len) * hidden + 2 * hidden + vocab * hidden


def gpt_train_flops_per_sample(layers: int, hidden: int, heads: int, seq_len: int, vocab: int) -> float:
    """Training FLOPs of one sequence of ``T = seq_len`` tokens, 3 x forward.

    Forward, per layer: the dense matmuls q, k, v, proj and the 4x MLP are
    ``2 * T * 12h^2 = 24 T h^2``; attention scores (QK^T) and the weighted sum (AV) are
    ``2 * 2 * T^2 * h`` in full, of which causal masking needs half: ``2 T^2 h``. The LM head is
    ``2 T h V``. Embedding look-ups, LayerNorm, softmax and GELU are not counted (no matmul), and
    the embedding tables are not matmul weights, so they add no FLOPs.

        train_flops = 3 * (layers * (24 T h^2 + 2 T^2 h) + 2 T h V)
    """
    del heads
    t, h = seq_len, hidden
    return 3.0 * (layers * (24 * t * h * h + 2 * t * t * h) + 2 * t * h * vocab)


# --------------------------------------------------------------------------------------- Llama


def llama_params(
    layers: int, hidden: int, heads: int, kv_heads: int, ffn_hidden: int, vocab: int, seq_len: int, rope_theta: int
) -> int:
    """Exact parameter count. Per block: q and o d², k and v d·(kv_heads·d/heads) each, w1, w2, w3
    d·f each, two RMSNorm scales d. Plus embedding V·d, final norm d, untied head V·d (no biases):

        layers·(2d² + 2d·d_kv + 3d·f + 2d) + 2V·d + d,   d_kv = kv_heads·d/heads
    """
    del seq_len, rope_theta
    d, kv = hidden, kv_heads * (hidden // heads)
    return layers * (2 * d * d + 2 * d * kv + 3 * d * ffn_hidden + 2 * d) + 2 * vocab * d + d


def llama_stage_flops(
    layers: int, hidden: int, heads: int, kv_heads: int, ffn_hidden: int, vocab: int, seq_len: int, rope_theta: int
) -> tuple[float, float, float]:
    """Forward FLOPs of one sequence (first stage's extras, one block, last stage's extras): the
    embedding look-up none; a block 2T·(2d² + 2d·d_kv + 3d·f) + 2T²d; the head 2TdV
    (:func:`llama_train_flops_per_sample`)."""
    del layers, rope_theta
    t, d, kv = seq_len, hidden, kv_heads * (hidden // heads)
    return 0.0, 2.0 * t * (2 * d * d + 2 * d * kv + 3 * d * ffn_hidden) + 2 * t * t * d, 2.0 * t * d * vocab


def llama_train_flops_per_sample(
    layers: int, hidden: int, heads: int, kv_heads: int, ffn_hidden: int, vocab: int, seq_len: int, rope_theta: int
) -> float:
    """Training FLOPs of one sequence of T tokens, 3 x forward (the gpt's convention): forward, per
    layer, 2 FLOPs per multiply-accumulate of every projection weight, 2T·(2d² + 2d·d_kv + 3d·f),
    plus attention scores and weighted sum with causal masking counted half, 2T²d (key/value
    heads are repeated to all query heads: the attention matmuls are those of full multi-head
    attention); the head 2TdV. RMSNorm, rotary, SiLU, softmax and the embedding look-up are not
    counted.

        train_flops = 3 · (layers · (2T(2d² + 2d·d_kv + 3d·f) + 2T²d) + 2TdV)
    """
    first, block, last = llama_stage_flops(layers, hidden, heads, kv_heads, ffn_hidden, vocab, seq_len, rope_theta)
    return 3.0 * (first + layers * block + last)


# long: one docstring listing every saved tensor of a block, the formula in a few lines
def llama_activations(
    cfg: dict[str, Any],
    stages: list[int],
    n_stages: int,
    b: int,
    forwards: int,
    tp: int,
    kept: frozenset = frozenset(),
    saving: Saving = FP32,
) -> float:
    """Saved bytes of one step on a rank holding pipeline ``stages``, b sequences of s tokens
    over ``forwards`` forward passes, as autograd saves them (counted tensor by tensor on the tiny
    preset: tests/test_archs.py), stored as ``saving`` says (:class:`Saving`). Per block and
    token: each RMSNorm (``F.rms_norm``, computed in fp32) its fp32 input (or fp32 copy of a bf16
    one) and normalised input (2h·4 bytes) and 1/rms (4 bytes), split under SP, and its output as
    the matmuls reading it save it (q, k, v: 3 readers; w1, w3: 2); attention the rotated q,
    the repeated k and v, the output (4h / tp, matmul dtype: fused CPU/GPU SDPA keeps no s x s
    matrix) and the fp32 log-sum-exp (heads / tp); SwiGLU w1, w3, silu and product outputs
    (4f / tp); plus rotary cos/sin (fp32, 2·s·head_dim per block and forward). Outside the blocks:
    token indices (int64) on the first stage; on the last the final norm, the logits' log-softmax
    (fp32, V), the targets (int64) and the loss per forward. A block in ``kept`` (activation
    checkpointing) saves only its input, s·b·h in the stream's dtype (/ tp under SP)."""
    layers, h, a, f, v, s = (int(cfg[k]) for k in ("layers", "hidden", "heads", "ffn_hidden", "vocab", "seq_len"))
    sv, r = saving, saving.region(tp)
    norm = (8.0 * s * b * h + 4 * s * b) / r
    per_block = (
        2 * norm
        + s * b * h * (sv.norm_output(3) + sv.norm_output(2))
        + sv.matmul * s * b * (4 * h + 4 * f) / tp
        + 4.0 * (a // tp) * s * b
        + 4 * 2 * s * (h // a) * forwards
    )
    out = 0.0
    for st in stages:
        mine = range(st * layers // n_stages, (st + 1) * layers // n_stages)
        out += sum(sv.stream * s * b * h / r if i in kept else per_block for i in mine)
        out += 8 * b * s if st == 0 else 0
        last = norm + s * b * h * sv.norm_output(1) + 4.0 * s * b * v + 8 * b * s + 4 * forwards
        out += last if st == n_stages - 1 else 0
    return out


# ----------------------------------------------------------------------------------------- ViT


def vit_params(
    image_size: int, patch: int, channels: int, layers: int, hidden: int, heads: int, mlp_hidden: int, classes: int
) -> int:
    """Exact parameter count. Patch projection C·p²·h + h, class token h, position embedding
    (1 + N)·h with N = (image_size/p)²; per block q, k, v, proj 4h² + 4h, fc1/fc2 2h·m + m + h,
    two LayerNorms 4h; final LayerNorm 2h; head h·classes + classes. ViT-B/16: 86,567,656."""
    del heads
    h, n = hidden, (image_size // patch) ** 2
    embed = channels * patch * patch * h + h + h + (1 + n) * h
    block = 4 * h * h + 4 * h + 2 * h * mlp_hidden + mlp_hidden + h + 4 * h
    return embed + layers * block + 2 * h + h * classes + classes


def vit_stage_flops(
    image_size: int, patch: int, channels: int, layers: int, hidden: int, heads: int, mlp_hidden: int, classes: int
) -> tuple[float, float, float]:
    """Forward FLOPs of one image (first stage's patch projection 2NCp²h, one block
    2T(4h² + 2hm) + 4T²h, the head 2h·classes): :func:`vit_train_flops_per_sample`."""
    del heads, layers
    h, n = hidden, (image_size // patch) ** 2
    t = 1 + n
    block = 2 * t * (4 * h * h + 2 * h * mlp_hidden) + 4 * t * t * h
    return 2.0 * n * channels * patch * patch * h, float(block), 2.0 * h * classes


def vit_train_flops_per_sample(
    image_size: int, patch: int, channels: int, layers: int, hidden: int, heads: int, mlp_hidden: int, classes: int
) -> float:
    """Training FLOPs of one image, 3 x forward. Forward: the patch projection 2·N·C·p²·h; per
    block over T = 1 + N tokens the projections 2T(4h² + 2h·m) and attention (scores and weighted
    sum, bidirectional: all of it) 4T²h; the head on the class token 2h·classes. LayerNorm, GELU,
    softmax and additions are not counted.

        train_flops = 3 · (2NCp²h + layers · (2T(4h² + 2hm) + 4T²h) + 2h·classes)
    """
    args = (image_size, patch, channels, layers, hidden, heads, mlp_hidden, classes)
    first, block, last = vit_stage_flops(*args)
    return 3.0 * (first + layers * block + last)


def vit_activations(
    cfg: dict[str, Any], stages: list[int], n_stages: int, b: int, forwards: int, tp: int, kept: frozenset = frozenset()
) -> float:
    """Saved fp32 bytes of one step on a rank holding pipeline ``stages`` (b images, T = 1 + N
    tokens; counted tensor by tensor on the tiny preset: tests/test_archs.py). Per block, in 4-byte
    elements: 4·T·b·h (each LayerNorm's input and output) + (4h + 2m)·T·b / tp (q, k, v, attention
    output; fc1 and GELU outputs) + 2·2·T·b (LayerNorm mean and 1/std) + heads/tp·T·b
    (log-sum-exp). First stage: the flattened patches (N·C·p² per image); last: the final
    LayerNorm over all tokens (2h + 2 per token), the log-softmax (classes), targets (int64), loss.
    A block in ``kept`` (activation checkpointing) saves only its input, T·b·h."""
    layers, h, a, m, c = (int(cfg[k]) for k in ("layers", "hidden", "heads", "mlp_hidden", "classes"))
    n = (int(cfg["image_size"]) // int(cfg["patch"])) ** 2
    t = 1 + n
    per_block = 4.0 * t * b * (4 * h + (4 * h + 2 * m) / tp) + 4 * (4 * b * t + a // tp * b * t)
    out = 0.0
    for st in stages:
        mine = range(st * layers // n_stages, (st + 1) * layers // n_stages)
        out += sum(4.0 * t * b * h if i in kept else per_block for i in mine)
        out += 4.0 * b * n * int(cfg["channels"]) * int(cfg["patch"]) ** 2 if st == 0 else 0
        out += 4.0 * b * (t * (2 * h + 2) + c) + 8 * b + 4 * forwards if st == n_stages - 1 else 0
    return out


# ------------------------------------------------------------------------------------ messages


def boundary(model_cfg: dict[str, Any]) -> tuple[int, int, int]:
    """(tokens, width, outputs) of one sample, for the cost model's activation-sized messages (a
    block's input: tokens x width; the head's output: outputs elements): a sequence model's
    seq_len, hidden, seq_len·vocab; a ViT's 1 + patches, hidden, classes; a custom model's are
    not known (0: its tensor and pipeline messages are not predicted)."""
    if "seq_len" in model_cfg:
        s = int(model_cfg["seq_len"])
        return s, int(model_cfg["hidden"]), s * int(model_cfg["vocab"])
    if model_cfg["arch"] == "vit":
        tokens = 1 + (int(model_cfg["image_size"]) // int(model_cfg["patch"])) ** 2
        return tokens, int(model_cfg["hidden"]), int(model_cfg["classes"])
    return 0, 0, 0
