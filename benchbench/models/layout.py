"""How a model declares its parallel layout (torchtitan-style: the model declares, the strategy
applies), and the two helpers that read the declaration: :func:`stage_forward` and
:func:`model_blocks`.

Every transformer here (:mod:`.gpt`, :mod:`.llama`, :mod:`.vit`) keeps its repeated blocks in a
``ModuleDict`` ``blocks`` (names ``"0"``, ``"1"``, ...: a pipeline stage deletes the blocks it does
not own and the survivors keep their names) and provides

* ``tp_plan(sequence_parallel) -> {module path: ParallelStyle}`` over the parts it still holds
  (:func:`benchbench.strategies.tensor_parallel.apply_tp` applies it);
* ``PIPELINE_FIRST`` / ``PIPELINE_LAST``: the attributes that only the first / last pipeline stage
  keeps (set to ``None`` elsewhere; :func:`stage_forward` skips ``None`` parts);
* the blocks themselves are the FSDP units, and the units activation checkpointing and
  compilation apply to (:func:`model_blocks`).
"""

from __future__ import annotations

from typing import Any

from torch import nn


def stage_forward(model: Any, x: Any) -> Any:
    """The forward of a model or of one of its pipeline stages: the ``PIPELINE_FIRST`` parts it
    holds, its ``blocks`` in order, then the ``PIPELINE_LAST`` parts it holds (a pruned part is
    ``None`` and skipped)."""
    for name in model.PIPELINE_FIRST:
        if (part := getattr(model, name)) is not None:
            x = part(x)
    for block in model.blocks.values():
        x = block(x)
    for name in model.PIPELINE_LAST:
        if (part := getattr(model, name)) is not None:
            x = part(x)
    return x


def model_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a model, in forward order: its FSDP units, and the units activation
    checkpointing and compilation wrap. Every transformer keeps them in a ``ModuleDict`` ``blocks``,
    the MLP in ``layers``; a model with neither has none."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        blocks = getattr(model, "layers", None)
    if blocks is None:
        return []
    return list(blocks.values()) if isinstance(blocks, nn.ModuleDict) else list(blocks)
