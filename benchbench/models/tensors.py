"""The parameter tensors one rank holds, analytically (no torch, no model built): those of its
pipeline stage and tensor-parallel shard, in registration order, each with its FSDP unit.

The shapes follow the builders (:mod:`.mlp`, :mod:`.gpt`, :mod:`.llama`, :mod:`.vit`: registration
order, e.g. a GPT's embeddings, blocks — ln1, attention q, k, v, proj, ln2, MLP fc1, fc2 — final
LayerNorm, head), the pipeline split of :mod:`benchbench.strategies.pipeline_parallel` (stage s of
n holds layers ⌊s·L/n⌋ … ⌊(s+1)·L/n⌋ − 1, the ``PIPELINE_FIRST`` parts on stage 0, the
``PIPELINE_LAST`` parts on the last) and each model's tensor-parallel layout (the gpt's
:mod:`benchbench.strategies.tensor_parallel`, the others' ``tp_plan``: column-wise weight rows and
bias / tp; row-wise weight columns / tp, bias replicated; norms and embeddings replicated).
:func:`benchbench.models.accounting.meta_tensors` reads the same off any meta-built model (a test
checks they agree), and the cost model's counts and bytes derived from them are checked against
the ``comm`` rows of real records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Tensor:
    """One parameter tensor as a rank holds it (its tensor-parallel shard)."""

    name: str
    shape: tuple[int, ...]
    unit: str  # the FSDP2 unit it belongs to: "block.<i>" (each block is fully_shard-ed) or "root"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _linear(name: str, out: int, inp: int, unit: str, split: str, tp: int, bias: bool = True) -> list[Tensor]:
    """A Linear's weight (out, in) and bias (out), column-wise (``col``: out / tp), row-wise
    (``row``: in / tp, bias replicated) or replicated (``rep``)."""
    o, i = (out // tp, inp) if split == "col" else (out, inp // tp) if split == "row" else (out, inp)
    bias_len = out // tp if split == "col" else out
    return [Tensor(f"{name}.weight", (o, i), unit)] + ([Tensor(f"{name}.bias", (bias_len,), unit)] if bias else [])


def _layer_norm(name: str, h: int, unit: str) -> list[Tensor]:
    """A LayerNorm's weight and bias (replicated)."""
    return [Tensor(f"{name}.weight", (h,), unit), Tensor(f"{name}.bias", (h,), unit)]


def _pre_ln_block(i: int, h: int, m: int, tp: int) -> list[Tensor]:
    """A gpt's or vit's block ``i``: ln1, attention q, k, v (column-wise), proj (row-wise), ln2,
    MLP fc1 (h -> m, column-wise), fc2 (row-wise); every Linear with a bias."""
    u, p = f"block.{i}", f"blocks.{i}"
    out = _layer_norm(f"{p}.ln1", h, u)
    for name in ("q", "k", "v"):
        out += _linear(f"{p}.attn.{name}", h, h, u, "col", tp)
    out += _linear(f"{p}.attn.proj", h, h, u, "row", tp) + _layer_norm(f"{p}.ln2", h, u)
    return out + _linear(f"{p}.mlp.fc1", m, h, u, "col", tp) + _linear(f"{p}.mlp.fc2", h, m, u, "row", tp)


def stage_layers(layers: int, stage: int, n_stages: int) -> range:
    """The block indices pipeline stage ``stage`` of ``n_stages`` holds."""
    return range(stage * layers // n_stages, (stage + 1) * layers // n_stages)


def gpt_tensors(cfg: dict[str, Any], stage: int = 0, n_stages: int = 1, tp: int = 1) -> list[Tensor]:
    """The parameter tensors of one pipeline stage of a gpt, as a tensor-parallel rank holds them."""
    layers, h, v, t = (int(cfg[k]) for k in ("layers", "hidden", "vocab", "seq_len"))
    out = [Tensor("embed.tok.weight", (v, h), "root"), Tensor("embed.pos.weight", (t, h), "root")] if stage == 0 else []
    for i in stage_layers(layers, stage, n_stages):
        out += _pre_ln_block(i, h, 4 * h, tp)
    if stage == n_stages - 1:
        out += _layer_norm("ln_f", h, "root") + _linear("head", v, h, "root", "col", tp, bias=False)
    return out


def mlp_tensors(cfg: dict[str, Any], stage: int = 0, n_stages: int = 1, tp: int = 1) -> list[Tensor]:
    """The parameter tensors of an MLP (every layer is an FSDP2 unit: ``apply_fsdp`` shards
    ``layers``): one stage, no tensor split, whatever ``stage``, ``n_stages`` and ``tp``."""
    del stage, n_stages, tp
    w, depth, out_dim = (int(cfg[k]) for k in ("width", "depth", "out_dim"))
    out: list[Tensor] = []
    for i in range(depth):
        out += _linear(f"layers.{i}", w, w, f"block.{i}", "rep", 1)
    return out + _linear("head", out_dim, w, "root", "rep", 1)


def _llama_block(i: int, cfg: dict[str, Any], tp: int) -> list[Tensor]:
    """A Llama's block ``i``: attn_norm, q, k, v (column-wise: heads / tp and kv_heads / tp heads),
    o (row-wise), mlp_norm, SwiGLU w1 (column-wise), w2 (row-wise), w3 (column-wise); no biases."""
    d, heads, kv_heads, f = (int(cfg[k]) for k in ("hidden", "heads", "kv_heads", "ffn_hidden"))
    q, kv = heads * (d // heads), kv_heads * (d // heads)
    u, p = f"block.{i}", f"blocks.{i}"
    out = [Tensor(f"{p}.attn_norm.weight", (d,), u)]
    out += _linear(f"{p}.attn.q", q, d, u, "col", tp, bias=False)
    out += _linear(f"{p}.attn.k", kv, d, u, "col", tp, bias=False)
    out += _linear(f"{p}.attn.v", kv, d, u, "col", tp, bias=False)
    out += _linear(f"{p}.attn.o", d, q, u, "row", tp, bias=False)
    out.append(Tensor(f"{p}.mlp_norm.weight", (d,), u))
    out += _linear(f"{p}.mlp.w1", f, d, u, "col", tp, bias=False)
    out += _linear(f"{p}.mlp.w2", d, f, u, "row", tp, bias=False)
    return out + _linear(f"{p}.mlp.w3", f, d, u, "col", tp, bias=False)


def llama_tensors(cfg: dict[str, Any], stage: int = 0, n_stages: int = 1, tp: int = 1) -> list[Tensor]:
    """The parameter tensors of one pipeline stage of a Llama (:mod:`benchbench.models.llama`), as a
    tensor-parallel rank of its ``tp_plan`` holds them: the embedding on stage 0, the blocks, the
    final RMSNorm and the head (column-wise over the vocabulary) on the last."""
    layers, d, v = (int(cfg[k]) for k in ("layers", "hidden", "vocab"))
    out = [Tensor("embed.weight", (v, d), "root")] if stage == 0 else []
    for i in stage_layers(layers, stage, n_stages):
        out += _llama_block(i, cfg, tp)
    if stage == n_stages - 1:
        out += [Tensor("norm.weight", (d,), "root"), *_linear("head", v, d, "root", "col", tp, bias=False)]
    return out


def vit_tensors(cfg: dict[str, Any], stage: int = 0, n_stages: int = 1, tp: int = 1) -> list[Tensor]:
    """The parameter tensors of one pipeline stage of a ViT (:mod:`benchbench.models.vit`), as a
    tensor-parallel rank of its ``tp_plan`` holds them: on stage 0 the patch embedding (its own
    class token and position embedding first, then its projection; all replicated), the blocks
    (the gpt's, MLP width ``mlp_hidden``), on the last the final LayerNorm and the head
    (column-wise over the classes, with its bias)."""
    layers, h, m, c = (int(cfg[k]) for k in ("layers", "hidden", "mlp_hidden", "classes"))
    patch, channels = int(cfg["patch"]), int(cfg["channels"])
    tokens = 1 + (int(cfg["image_size"]) // patch) ** 2
    out: list[Tensor] = []
    if stage == 0:
        out += [Tensor("embed.cls", (1, 1, h), "root"), Tensor("embed.pos", (1, tokens, h), "root")]
        out += _linear("embed.proj", h, channels * patch * patch, "root", "rep", tp)
    for i in stage_layers(layers, stage, n_stages):
        out += _pre_ln_block(i, h, m, tp)
    if stage == n_stages - 1:
        out += _layer_norm("norm", h, "root") + _linear("head", c, h, "root", "col", tp)
    return out
