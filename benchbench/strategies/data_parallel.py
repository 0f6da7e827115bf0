"""Data parallelism: every rank holds the whole model and trains on its shard of the batch.

Two flavours side by side, so a study shows what DDP's engineering buys:

* :class:`NaiveGradSync` — the textbook algorithm (Li et al., "PyTorch Distributed", VLDB 2020,
  section 2): after ``backward`` finishes, all-reduce every gradient tensor on its own and divide
  by the world size. No bucketing, no overlap of communication with the backward pass.
* :func:`apply_ddp` — ``torch.nn.parallel.DistributedDataParallel``: gradients are grouped into
  buckets (``bucket_cap_mb``) and each bucket's all-reduce starts as soon as its gradients are
  ready, overlapping communication with the rest of the backward pass.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


class NaiveGradSync:
    """All-reduce (sum) each gradient after backward, then divide by the group size.

    Counts the bytes it hands to the all-reduce, so its communication volume is measured."""

    def __init__(self, model: nn.Module, group: dist.ProcessGroup | None = None) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.group = group
        self.world = dist.get_world_size(group)
        self.bytes_last_step = 0

    def __call__(self) -> None:
        sent = 0
        for p in self.params:
            if p.grad is None:
                continue
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM, group=self.group)
            p.grad.div_(self.world)
            sent += p.grad.numel() * p.grad.element_size()
        self.bytes_last_step = sent


def apply_ddp(model: nn.Module, device: torch.device, bucket_cap_mb: float) -> DistributedDataParallel:
    """Wrap ``model`` in DDP on ``device`` (CPU: no device ids) with the given bucket size."""
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, bucket_cap_mb=bucket_cap_mb)


def grad_bytes(model: nn.Module) -> int:
    """Bytes of all trainable gradients: the payload one data-parallel all-reduce moves per step."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
