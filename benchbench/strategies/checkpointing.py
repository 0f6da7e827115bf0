"""Activation checkpointing per transformer block, as torchtitan's ``apply_ac`` does: a block's
forward runs under ``torch.utils.checkpoint`` (non-reentrant, no RNG state kept: the models have no
dropout), so autograd keeps only the block's input and recomputes the block's forward during
backward — memory for compute (Chen et al., "Training Deep Nets with Sublinear Memory Cost",
2016; Korthikanti et al., MLSys 2023, §5).

* ``full`` — every block;
* ``selective`` — every ``ac_every``-th block (blocks ``ac_every - 1``, ``2·ac_every - 1``, … by
  their index in the whole model, so pipeline stages choose as the single model does):
  torchtitan's layer-selective AC (``ac_freq``).

The block's own ``forward`` is replaced on the instance (not wrapped in a ``CheckpointWrapper``
module), so parameter names stay those of the unwrapped model — the seeded initialisation and the
gate's fingerprints key on them — and FSDP2's hooks, registered later on the block, stay around
the checkpointed forward (its all-gather before backward precedes the recompute).
"""

from __future__ import annotations

import functools
from typing import Any

from torch import nn
from torch.utils.checkpoint import checkpoint

from benchbench.spec.plan import checkpointed_blocks

#: Attribute a checkpointed block carries (read back by :mod:`benchbench.strategies.composition`).
MARK = "_benchbench_checkpointed"


def _checkpointed(forward: Any, *args: Any, **kwargs: Any) -> Any:
    return checkpoint(forward, *args, use_reentrant=False, preserve_rng_state=False, **kwargs)


def apply_ac(model: nn.Module, mode: str, every: int) -> nn.Module:
    """Checkpoint the blocks of ``model`` (a gpt or one of its pipeline stages) that ``mode``
    chooses; ``none`` leaves the model as it is."""
    blocks = getattr(model, "blocks", None)
    if mode == "none" or blocks is None:
        return model
    for name in checkpointed_blocks(list(blocks.keys()), mode, every):
        block = blocks[name]
        block.forward = functools.partial(_checkpointed, block.forward)
        setattr(block, MARK, True)
    return model


def checkpoint_summary(modules: list[nn.Module]) -> str | None:
    """``checkpoint(k/n blocks)`` for the blocks of ``modules`` carrying :data:`MARK`, or ``None``."""
    owners = [o for m in modules for o in m.modules() if isinstance(getattr(o, "blocks", None), nn.ModuleDict)]
    blocks = [b for o in owners for b in o.blocks.values()]  # inside any wrapper (DDP's .module)
    marked = sum(bool(getattr(b, MARK, False)) for b in blocks)
    return f"checkpoint({marked}/{len(blocks)} blocks)" if marked else None
