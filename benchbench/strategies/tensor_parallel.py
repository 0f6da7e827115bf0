"""Tensor parallelism (Megatron-LM, Shoeybi et al., 2019) with DTensor's ``parallelize_module``.

Per block: q, k, v column-wise (each rank owns ``heads / tp`` heads), ``proj`` row-wise; the MLP's
``fc1`` column-wise, ``fc2`` row-wise; one all-reduce after attention and one after the MLP in
forward (and their mirrors in backward). The LM head is column-wise over the vocabulary with
replicated output. Embeddings and LayerNorms are replicated.

Sequence parallelism (Korthikanti et al., 2022) additionally shards the LayerNorms and the
residual stream along the sequence: each all-reduce becomes a reduce-scatter, and an all-gather
precedes attention and the MLP (layouts as in torchtitan's ``apply_tp``).
"""

from __future__ import annotations

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    PrepareModuleOutput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)


def apply_tp(model: nn.Module, tp_mesh: DeviceMesh, sequence_parallel: bool) -> nn.Module:
    """Split a (possibly pipeline-pruned) model over ``tp_mesh`` in place: with the plan the model
    declares (``tp_plan(sequence_parallel)``: :mod:`benchbench.models.layout`), else the GPT's below."""
    if hasattr(model, "tp_plan"):
        parallelize_module(model, tp_mesh, model.tp_plan(sequence_parallel))
        return model
    sp = sequence_parallel
    block_plan = {
        "attn.q": ColwiseParallel(),
        "attn.k": ColwiseParallel(),
        "attn.v": ColwiseParallel(),
        "attn.proj": RowwiseParallel(output_layouts=Shard(1)) if sp else RowwiseParallel(),
        "mlp.fc1": ColwiseParallel(),
        "mlp.fc2": RowwiseParallel(output_layouts=Shard(1)) if sp else RowwiseParallel(),
    }
    if sp:
        gather = PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),))
        block_plan.update({"ln1": SequenceParallel(), "attn": gather, "ln2": SequenceParallel(), "mlp": gather})
    for block in model.blocks.values():
        parallelize_module(block, tp_mesh, block_plan)

    top: dict = {}
    if model.embed is not None and sp:
        top["embed"] = PrepareModuleOutput(output_layouts=Replicate(), desired_output_layouts=Shard(1))
    if model.ln_f is not None and sp:
        top["ln_f"] = SequenceParallel()
    if model.head is not None:
        top["head"] = ColwiseParallel(input_layouts=Shard(1) if sp else Replicate(), output_layouts=Replicate())
    if top:
        parallelize_module(model, tp_mesh, top)
    return model
