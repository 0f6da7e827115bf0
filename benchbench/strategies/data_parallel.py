"""Data parallelism: every rank holds the whole model (or stage) and trains on its shard of the
batch. Two flavours side by side, so a study shows what DDP's engineering buys:

* :class:`NaiveGradSync` — the textbook algorithm (Li et al., "PyTorch Distributed", VLDB 2020,
  section 2): after ``backward`` finishes, all-reduce every gradient tensor on its own and divide
  by the group size. No bucketing, no overlap of communication with the backward pass.
* :func:`apply_ddp` — ``torch.nn.parallel.DistributedDataParallel``: gradients are grouped into
  buckets (``bucket_cap_mb``) and each bucket's all-reduce starts as soon as its gradients are
  ready, overlapping communication with the rest of the backward pass; ``static_graph`` lets DDP
  skip per-step graph discovery.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


class NaiveGradSync:
    """All-reduce (sum) each gradient after backward, then divide by the group size."""

    def __init__(self, model: nn.Module, group: dist.ProcessGroup | None = None) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.group = group
        self.world = dist.get_world_size(group)
        self.enabled = True  # off only while benchbench.rank.measure.exposed times the step without sync

    def __call__(self) -> None:
        if not self.enabled:
            return
        for p in self.params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM, group=self.group)
                p.grad.div_(self.world)


def apply_ddp(
    model: nn.Module,
    device: torch.device,
    group: dist.ProcessGroup | None,
    bucket_cap_mb: float,
    static_graph: bool = False,
) -> DistributedDataParallel:
    """Wrap ``model`` in DDP over ``group`` on ``device`` (CPU: no device ids)."""
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(
        model, device_ids=device_ids, process_group=group, bucket_cap_mb=bucket_cap_mb, static_graph=static_graph
    )
