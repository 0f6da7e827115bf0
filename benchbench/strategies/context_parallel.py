"""Context parallelism: each of ``cp`` ranks holds 1/cp of every sequence and attention runs as
ring attention over the ``cp`` mesh — torch's ``torch.distributed.tensor.experimental.context_parallel``
(Liu et al., "Ring Attention with Blockwise Transformers", 2023), applied as torchtitan does
(``create_context_parallel_ctx`` in ``torchtitan/distributed/utils.py``, until torchtitan
#2555 moved it to ``prepare_context_parallel_input``: the context around forward *and* backward,
rotate method ``allgather``, with the inputs, the labels and the rotary/position buffer sharded along the sequence;
FSDP2 over the flattened ``dp x cp`` mesh, since the cp ranks hold the same parameters).

Inside the context torch shards the listed buffers in place along their sequence dimension with
its head-tail load balancer (rank r keeps chunks r and 2·cp-1-r of 2·cp, so causal work is
even) and dispatches ``F.scaled_dot_product_attention`` to its ring implementation. Our GPT's
learned position embedding indexes ``arange(T)``; under CP a rank's tokens are not positions
0..T/cp-1, so :func:`apply_cp` gives the embedding a position buffer that is sharded with the
tokens (torchtitan does the same with ``freqs_cis``). Each rank's loss is the mean over its
tokens; the cp shards are equal, so the mean over ranks (the record's loss) and FSDP's gradient
average over dp x cp equal the unsharded ones.

GPU-only: on CPU the ring dispatcher has no rule for the CPU SDPA kernel
(:mod:`~benchbench.spec.gpu_features`), so such jobs never launch.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

StepContext = Callable[[torch.Tensor, torch.Tensor], contextlib.AbstractContextManager]


def _embed_with_positions(self: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """The GPT embedding's forward with the (cp-sharded) position buffer instead of ``arange``."""
    return self.tok(idx) + self.pos(self.cp_positions[: idx.shape[1]])


def apply_cp(model: nn.Module, cp_mesh: DeviceMesh, seq_len: int, device: torch.device) -> StepContext:
    """Prepare a materialised (possibly tensor-parallel, FSDP-wrapped) GPT for context parallel
    over ``cp_mesh`` and return the per-micro-step context: ``with ctx(x, y) as (x, y):`` runs
    forward and backward on this rank's share of the sequence of ``x`` and ``y`` (copies; the
    caller's batch is not resharded)."""
    from torch.distributed.tensor.experimental import context_parallel
    from torch.distributed.tensor.experimental._attention import set_rotate_method

    set_rotate_method("allgather")  # torchtitan's default cp_rotate_method
    embed = getattr(model, "embed", None)
    if embed is not None:  # a pipeline's later stages have no embedding (cp is not composed with pp)
        embed.register_buffer("cp_positions", torch.arange(seq_len, device=device), persistent=False)
        embed.forward = types.MethodType(_embed_with_positions, embed)

    @contextlib.contextmanager
    def step(x: torch.Tensor, y: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y = x.clone(), y.clone()
        buffers = [x, y] + ([embed.cp_positions] if embed is not None else [])
        with context_parallel(
            cp_mesh, buffers=buffers, buffer_seq_dims=[1, 1, 0][: len(buffers)], no_restore_buffers={x, y}
        ):
            yield x, y

    step.cp_size = cp_mesh.size()  # read back by benchbench.strategies.composition
    return step
