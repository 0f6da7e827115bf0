"""Cross-rank reductions of a rank's measurements, after the timed loop (so none is timed).

Each is a no-op without a process group. NCCL reduces device tensors only, gloo host tensors:
:func:`reduce_named` moves values to where the backend wants them and back to the CPU.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

_OPS = {"max": dist.ReduceOp.MAX, "sum": dist.ReduceOp.SUM}


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def _reduce(t: torch.Tensor, op: str, device: torch.device) -> torch.Tensor:
    if not _active():
        return t
    where = device if dist.get_backend() == "nccl" else torch.device("cpu")
    if op == "mean":
        return _reduce(t, "sum", device) / dist.get_world_size()
    moved = t.to(where)
    dist.all_reduce(moved, op=_OPS[op])
    return moved.cpu()


def dist_sum(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Element-wise sum over all ranks."""
    return _reduce(t, "sum", device)


def reduce_named(values: dict[str, torch.Tensor], ops: dict[str, str], device: torch.device) -> dict[str, torch.Tensor]:
    """Reduce each named tensor with its op (``max``, ``sum`` or ``mean``); every rank must call
    this with the same names in the same order."""
    if set(values) != set(ops):
        raise ValueError(f"reduction ops missing or extra for {sorted(set(values) ^ set(ops))}")
    return {name: _reduce(t.to(torch.float64), ops[name], device) for name, t in values.items()}


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` without a process group)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
