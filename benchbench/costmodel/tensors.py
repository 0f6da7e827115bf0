"""What one rank holds and computes, as the cost model needs it (no torch for the built-in models):
the parameter tensors of its pipeline stages and tensor-parallel shard (:func:`stage_tensors`, from
:mod:`benchbench.models.tensors`), DDP's gradient buckets, FSDP2's units and the share of the
model's FLOPs the rank computes. A test checks the counts and bytes derived from them against the
``comm`` rows of real records.
"""

from __future__ import annotations

import math
from typing import Any

from benchbench.models.registry import ARCHITECTURES, size_args
from benchbench.models.tensors import Tensor, stage_layers

#: Bytes of one fp32 element (parameters, gradients, optimizer state: BYTES_PER_PARAM in memory.py).
FP32 = 4
MIB = 2**20


def stage_tensors(model_cfg: dict[str, Any], stage: int, n_stages: int, tp: int) -> list[Tensor]:
    """The tensors of one stage of any architecture: the built-in ones analytically
    (``Architecture.tensors``: :mod:`benchbench.models.tensors`, no torch), a custom model's read
    off its meta-built model (:func:`benchbench.models.accounting.meta_tensors`, torch)."""
    tensors = ARCHITECTURES[model_cfg["arch"]].tensors
    if tensors is None:
        from benchbench.models.accounting import meta_tensors  # torch: a custom model, built on meta

        return meta_tensors(model_cfg, stage, n_stages, tp)
    return tensors(model_cfg, stage, n_stages, tp)


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
    (:func:`benchbench.models.formulas.gpt_train_flops_per_sample`'s terms / 3)."""
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
