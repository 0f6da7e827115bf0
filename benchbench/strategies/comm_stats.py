"""Counting the bytes a rank hands to collectives, by watching the dispatcher.

Since torch 2.0 every c10d collective — issued from Python (``dist.all_reduce``, FSDP2's
all-gather / reduce-scatter, pipeline send/recv), from DTensor (functional collectives) or from
DDP's C++ reducer — is a dispatcher op, so one ``TorchDispatchMode`` sees them all (the idea of
``torch.distributed.tensor.debug.CommDebugMode``, which counts calls but not bytes).

Payload per op follows nccl-tests' "size": all-reduce, broadcast, reduce-scatter and all-to-all
count their input, all-gather its output, point-to-point the sent tensor (receives are not
counted, so each transfer counts once). The mode intercepts every op, so it is used for one
extra, untimed step.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# op name -> index of the argument whose tensors are the payload
_PAYLOAD_ARG = {
    # c10d (ProcessGroup) ops
    "allreduce_": 0,
    "allreduce_coalesced_": 0,
    "broadcast_": 0,
    "allgather_": 0,  # output lists
    "_allgather_base_": 0,  # output
    "allgather_into_tensor_coalesced_": 0,
    "reduce_scatter_": 1,  # input lists
    "_reduce_scatter_base_": 1,  # input
    "reduce_scatter_tensor_coalesced_": 1,
    "alltoall_": 1,
    "alltoall_base_": 1,
    "send": 0,
    # functional collectives (DTensor)
    "all_reduce": 0,
    "all_reduce_coalesced": 0,
    "reduce_scatter_tensor": 0,
    "reduce_scatter_tensor_coalesced": 0,
    "all_to_all_single": 0,
    "broadcast": 0,
}
_GATHER_FUNCTIONAL = {"all_gather_into_tensor", "all_gather_into_tensor_coalesced"}


def _nbytes(obj: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tree_leaves(obj) if isinstance(t, torch.Tensor))


class CommCounter(TorchDispatchMode):
    """Within the ``with`` block, sum the payload bytes and count the calls of each collective."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self.calls: Counter[str] = Counter()
        self.bytes_by_op: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.namespace in ("c10d", "_c10d_functional"):
            name = func._opname
            if name in _GATHER_FUNCTIONAL:
                n = _nbytes(out)
            elif name in _PAYLOAD_ARG and len(args) > _PAYLOAD_ARG[name]:
                n = _nbytes(args[_PAYLOAD_ARG[name]])
            else:
                n = 0  # barrier, recv, wait_tensor, ...
            if name != "wait_tensor":
                self.calls[name] += 1
            self.bytes += n
            self.bytes_by_op[name] += n
        return out
