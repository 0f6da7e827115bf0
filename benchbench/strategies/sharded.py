"""Sharded data parallelism (ZeRO, Rajbhandari et al., SC 2020) with torch's own APIs.

* ZeRO-1 — :func:`zero1_optimizer`: gradients all-reduced by DDP as usual, optimizer state
  sharded over the data-parallel ranks by ``ZeroRedundancyOptimizer``; each rank updates its
  shard of the parameters and broadcasts it.
* FSDP2 — :func:`apply_fsdp`: ``fully_shard`` on every transformer block and the root.
  Parameters are all-gathered before use and gradients reduce-scattered. With
  ``reshard_after_forward=True`` the gathered parameters are freed after forward and gathered
  again for backward (ZeRO-3-like); with ``False`` they stay until after backward (ZeRO-2-like:
  less communication, more memory).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

if TYPE_CHECKING:  # FSDP and ZeRO are imported by the plans that use them (ZeRO's: up to 0.5 s)
    from torch.distributed.device_mesh import DeviceMesh

from benchbench.models.layout import model_blocks


def apply_fsdp(
    model: nn.Module, dp_mesh: DeviceMesh, reshard_after_forward: bool, param_dtype: torch.dtype | None = None
) -> nn.Module:
    """``fully_shard`` each block (so gathers overlap with the previous block's compute), then the
    root. ``fully_shard`` moves each shard to the mesh's device, so a model built on the CPU never
    lands on the GPU whole. With ``param_dtype`` (bf16 jobs) parameters are gathered in that dtype
    and gradients reduced in fp32 (``MixedPrecisionPolicy``), as torchtitan does."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32) if param_dtype else None
    kwargs = {"mesh": dp_mesh, "reshard_after_forward": reshard_after_forward, **({"mp_policy": mp} if mp else {})}
    for block in model_blocks(model):  # the model's FSDP units (benchbench.models.layout)
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    return model


@contextlib.contextmanager
def fsdp_no_sync(model: nn.Module) -> Iterator[None]:
    """Skip FSDP's gradient reduce-scatter inside the block (gradient accumulation)."""
    from torch.distributed.fsdp import FSDPModule

    assert isinstance(model, FSDPModule)
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def zero1_optimizer(
    params: Any, group: dist.ProcessGroup | None, lr: float, cls: type[torch.optim.Optimizer], kwargs: dict[str, Any]
) -> torch.optim.Optimizer:
    """Optimizer ``cls`` with its state sharded over ``group`` (ZeRO stage 1)."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    return ZeroRedundancyOptimizer(list(params), optimizer_class=cls, process_group=group, lr=lr, **kwargs)
