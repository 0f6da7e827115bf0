"""Seeded synthetic tasks that a model can learn, identical for every strategy and world size.

The global batch of step ``k`` depends only on (seed, k, global batch size); each data-parallel
rank takes its contiguous shard of it (:func:`shard`). Which task trains which architecture is
the architecture table's business (:data:`benchbench.models.registry.ARCHITECTURES`). Two tasks:

* ``mlp``: regression onto a fixed random *teacher* network (MSE loss).
* ``gpt``: next-token prediction on sequences drawn from a fixed random Markov chain over the
  vocabulary (cross-entropy); the chain's rows are peaked, so the achievable loss lies well
  below ``log(vocab)`` and the loss visibly falls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Seeds of step k: seed * stride + k, disjoint from the task's own seed (every task's batches).
STEP_STRIDE = 1_000_003


class SyntheticTask(Protocol):
    """A task: the global batch of a step, and the loss on (model output, target)."""

    loss_fn: LossFn

    def batch(self, step: int, global_batch: int) -> tuple[torch.Tensor, torch.Tensor]: ...


class TeacherRegression:
    """Inputs x ~ N(0, 1); targets = tanh(x W1) W2 of a fixed random teacher."""

    def __init__(self, width: int, out_dim: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        hidden = max(out_dim, 64)
        self.w1 = torch.randn(width, hidden, generator=g) / width**0.5
        self.w2 = torch.randn(hidden, out_dim, generator=g) / hidden**0.5
        self.width, self.seed = width, seed
        self.loss_fn: LossFn = F.mse_loss

    @classmethod
    def for_model(cls, model_cfg: dict[str, Any], seed: int) -> TeacherRegression:
        """The task of an ``mlp`` model config: inputs of its width, targets of its output size."""
        return cls(int(model_cfg["width"]), int(model_cfg["out_dim"]), seed)

    def batch(self, step: int, global_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * STEP_STRIDE + step)
        x = torch.randn(global_batch, self.width, generator=g)
        return x, torch.tanh(x @ self.w1) @ self.w2


class MarkovTokens:
    """Token sequences from a fixed random Markov chain; inputs are tokens 0..T-1, targets 1..T."""

    def __init__(self, vocab: int, seq_len: int, seed: int, sharpness: float = 4.0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.transition = torch.softmax(sharpness * torch.randn(vocab, vocab, generator=g), dim=-1)
        self.vocab, self.seq_len, self.seed = vocab, seq_len, seed

    @classmethod
    def for_model(cls, model_cfg: dict[str, Any], seed: int) -> MarkovTokens:
        """The task of a ``gpt`` model config: its vocabulary and sequence length."""
        return cls(int(model_cfg["vocab"]), int(model_cfg["seq_len"]), seed)

    @staticmethod
    def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))

    def batch(self, step: int, global_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * STEP_STRIDE + step)
        tokens = torch.empty(global_batch, self.seq_len + 1, dtype=torch.long)
        tokens[:, 0] = torch.randint(self.vocab, (global_batch,), generator=g)
        for t in range(self.seq_len):
            tokens[:, t + 1] = torch.multinomial(self.transition[tokens[:, t]], 1, generator=g).squeeze(1)
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


def shard(t: torch.Tensor, index: int, parts: int) -> torch.Tensor:
    """Rows ``[index * n/parts, (index+1) * n/parts)`` of ``t``: one data-parallel rank's share."""
    n = t.shape[0]
    if n % parts:
        raise ValueError(f"batch of {n} rows does not split into {parts} equal shards")
    size = n // parts
    return t[index * size : (index + 1) * size]
