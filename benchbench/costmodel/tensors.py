"""What one rank holds and computes, analytically (no torch, no model built): the parameter tensors
of its pipeline stages and tensor-parallel shard in registration order, DDP's gradient buckets,
FSDP2's units and the share of the model's FLOPs the rank computes.

The shapes follow :mod:`benchbench.models.registry` (registration order: a GPT's embeddings, blocks — ln1,
attention q, k, v, proj, ln2, MLP fc1, fc2 — final LayerNorm, head; an MLP's layers, head), the
pipeline split of :mod:`benchbench.strategies.pipeline_parallel` (stage s of n holds layers
⌊s·L/n⌋ … ⌊(s+1)·L/n⌋ − 1, embeddings on stage 0, final LayerNorm and head on the last) and the
tensor-parallel layout of :mod:`benchbench.strategies.tensor_parallel` (q, k, v, fc1 and the head
column-wise: weight rows and bias / tp; proj and fc2 row-wise: weight columns / tp, bias
replicated; LayerNorms and embeddings replicated). A test checks the counts and bytes derived from
them against the ``comm`` rows of real records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Bytes of one fp32 element (parameters, gradients, optimizer state: BYTES_PER_PARAM in memory.py).
FP32 = 4
MIB = 2**20


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


def _gpt_block(i: int, h: int, tp: int) -> list[Tensor]:
    u, p = f"block.{i}", f"blocks.{i}"
    out = [Tensor(f"{p}.ln1.weight", (h,), u), Tensor(f"{p}.ln1.bias", (h,), u)]
    for name in ("q", "k", "v"):
        out += _linear(f"{p}.attn.{name}", h, h, u, "col", tp)
    out += _linear(f"{p}.attn.proj", h, h, u, "row", tp)
    out += [Tensor(f"{p}.ln2.weight", (h,), u), Tensor(f"{p}.ln2.bias", (h,), u)]
    return out + _linear(f"{p}.mlp.fc1", 4 * h, h, u, "col", tp) + _linear(f"{p}.mlp.fc2", h, 4 * h, u, "row", tp)


def stage_layers(layers: int, stage: int, n_stages: int) -> range:
    """The block indices pipeline stage ``stage`` of ``n_stages`` holds."""
    return range(stage * layers // n_stages, (stage + 1) * layers // n_stages)


def gpt_tensors(cfg: dict[str, Any], stage: int = 0, n_stages: int = 1, tp: int = 1) -> list[Tensor]:
    """The parameter tensors of one pipeline stage of a gpt, as a tensor-parallel rank holds them."""
    layers, h, v, t = (int(cfg[k]) for k in ("layers", "hidden", "vocab", "seq_len"))
    out = [Tensor("embed.tok.weight", (v, h), "root"), Tensor("embed.pos.weight", (t, h), "root")] if stage == 0 else []
    for i in stage_layers(layers, stage, n_stages):
        out += _gpt_block(i, h, tp)
    if stage == n_stages - 1:
        out += [Tensor("ln_f.weight", (h,), "root"), Tensor("ln_f.bias", (h,), "root")]
        out += _linear("head", v, h, "root", "col", tp, bias=False)
    return out


def mlp_tensors(cfg: dict[str, Any]) -> list[Tensor]:
    """The parameter tensors of an MLP (every layer is an FSDP2 unit: ``apply_fsdp`` shards ``layers``)."""
    w, depth, out_dim = (int(cfg[k]) for k in ("width", "depth", "out_dim"))
    out: list[Tensor] = []
    for i in range(depth):
        out += _linear(f"layers.{i}", w, w, f"block.{i}", "rep", 1)
    return out + _linear("head", out_dim, w, "root", "rep", 1)


def stage_tensors(model_cfg: dict[str, Any], stage: int, n_stages: int, tp: int) -> list[Tensor]:
    """The tensors of one stage of any architecture (an MLP has one stage and no tensor split; the
    architectures of :mod:`benchbench.models.presets` are read off their meta-built model)."""
    if model_cfg["arch"] == "gpt":
        return gpt_tensors(model_cfg, stage, n_stages, tp)
    if model_cfg["arch"] == "mlp":
        return mlp_tensors(model_cfg)
    from benchbench.models.accounting import meta_tensors

    return meta_tensors(model_cfg, stage, n_stages, tp)


def ddp_buckets(tensors: list[Tensor], bucket_cap_mb: float) -> list[list[Tensor]]:
    """DDP's gradient buckets, in the order they are all-reduced, given the tensors in the order
    their gradients become ready (reverse registration order). After DDP's first step the reducer
    rebuilds its buckets in that order with one limit, ``bucket_cap_mb`` MiB (benchbench passes
    ``bucket_cap_mb`` explicitly, so torch's smaller first bucket does not apply:
    ``_BucketCapacityConfig`` in torch/nn/parallel/distributed.py), closing a bucket as soon as it
    holds at least the limit (``compute_bucket_assignment_by_size`` in torch's reducer)."""
    cap = int(bucket_cap_mb * MIB)
    buckets: list[list[Tensor]] = []
    current: list[Tensor] = []
    for t in tensors:
        current.append(t)
        if sum(x.numel for x in current) * FP32 >= cap:
            buckets.append(current)
            current = []
    return buckets + ([current] if current else [])


def padded_numel(t: Tensor, dp: int) -> int:
    """Elements of ``t`` as FSDP2 shards it over ``dp`` ranks: dim 0 padded to a multiple of dp."""
    rows = -(-t.shape[0] // dp) * dp
    return rows * math.prod(t.shape[1:])


def fsdp_units(tensors: list[Tensor], dp: int) -> list[int]:
    """Elements of each FSDP2 unit (its tensors padded, :func:`padded_numel`), in forward order:
    the root (embeddings first in forward) then the blocks."""
    units: dict[str, int] = {}
    for t in tensors:
        units[t.unit] = units.get(t.unit, 0) + padded_numel(t, dp)
    order = ["root"] + [u for u in units if u != "root"]
    return [units[u] for u in order if u in units]


def gpt_layer_flops(cfg: dict[str, Any]) -> tuple[float, float]:
    """Forward FLOPs of one sequence through one block and through the head
    (:func:`benchbench.models.registry.gpt_train_flops_per_sample`'s terms / 3)."""
    h, v, t = (int(cfg[k]) for k in ("hidden", "vocab", "seq_len"))
    return 24 * t * h * h + 2 * t * t * h, 2 * t * h * v


def flop_share(model_cfg: dict[str, Any], stages: list[int], n_stages: int, tp: int) -> float:
    """The share of the model's training FLOPs a rank holding pipeline ``stages`` computes: its
    blocks (the first stage's embedding FLOPs, the head on the last) over the whole model's, / tp
    (tensor parallelism splits every counted matmul: q, k, v, proj, fc1, fc2, attention by heads,
    the head by vocabulary; a ViT's patch projection is not split, counted / tp all the same)."""
    if model_cfg["arch"] == "gpt":
        first, (block, last) = 0.0, gpt_layer_flops(model_cfg)
    else:
        from benchbench.models.registry import ARCHITECTURES, size_args

        stage_flops = ARCHITECTURES[model_cfg["arch"]].stage_flops
        if stage_flops is None:
            return 1.0
        first, block, last = stage_flops(**size_args(model_cfg))
    layers = int(model_cfg["layers"])
    mine = sum(
        len(stage_layers(layers, s, n_stages)) * block + (first if s == 0 else 0) + (last if s == n_stages - 1 else 0)
        for s in stages
    )
    return mine / (first + layers * block + last) / tp
