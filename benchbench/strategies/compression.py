"""Gradient compression through DDP communication hooks (torch.distributed.algorithms).

* ``fp16`` / ``bf16``: cast each bucket to half precision, all-reduce, cast back — half the bytes,
  rounding error in the gradient (``default_hooks.fp16_compress_hook``; :func:`bf16_cast_hook`).
* ``powersgd``: PowerSGD (Vogels et al., NeurIPS 2019): each gradient matrix M is replaced by a
  rank-r factorisation P Q^T found by one power iteration per step, with error feedback; only P
  and Q are all-reduced. Plain all-reduce for the first ``powersgd_warmup`` steps
  (``start_powerSGD_iter``).

All three are lossy: the report labels them so and shows their loss deviation. Each hook sits
behind a :func:`switched_hook`, so the exposed-communication probe can time
the same step without it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from torch.nn.parallel import DistributedDataParallel


def switched_hook(inner: Any) -> Any:
    """A DDP comm hook that runs ``inner`` while its ``on`` attribute is true, else returns the
    bucket unchanged (a plain function without annotations: DDP inspects a hook's signature)."""

    def hook(state, bucket):
        if hook.on:
            return inner(state, bucket)
        fut = torch.futures.Future()
        fut.set_result(bucket.buffer())
        return fut

    hook.on = True
    hook.__name__ = f"switched_{getattr(inner, '__name__', 'hook')}"
    return hook


def bf16_cast_hook(group, bucket):
    """bf16 twin of ``default_hooks.fp16_compress_hook``, for every backend: torch's own
    ``bf16_compress_hook`` refuses anything but NCCL >= 2.10, checked by name, so gloo on CPU."""
    buffer = bucket.buffer()
    compressed = buffer.to(torch.bfloat16).div_(dist.get_world_size(group))
    fut = dist.all_reduce(compressed, group=group, async_op=True).get_future()

    def decompress(f):
        buffer.copy_(f.value()[0])
        return buffer

    return fut.then(decompress)


def register_compression(
    ddp: DistributedDataParallel, compression: str, group: dist.ProcessGroup | None, rank: int = 1, warmup: int = 2
) -> None:
    """Install the communication hook for ``compression`` on ``ddp`` (``none``: keep the default)."""
    if compression == "none":
        return
    state: object = group
    if compression == "fp16":
        hook = switched_hook(default_hooks.fp16_compress_hook)
    elif compression == "bf16":
        hook = switched_hook(bf16_cast_hook)
    elif compression == "powersgd":
        state = powerSGD_hook.PowerSGDState(
            process_group=group, matrix_approximation_rank=rank, start_powerSGD_iter=warmup, random_seed=0
        )
        hook = switched_hook(powerSGD_hook.powerSGD_hook)
    else:
        raise ValueError(f"unknown compression {compression!r}")
    ddp.register_comm_hook(state, hook)
    ddp._benchbench_hook = hook
