"""The MLP as an ``nn.Module``: ``depth`` Linear + GELU blocks and a Linear head (its parameter
count and FLOPs: :mod:`benchbench.models.formulas`; its task: :class:`~benchbench.models.tasks.TeacherRegression`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """``depth`` blocks of Linear(width, width) + GELU on a ``width``-wide input, then a
    Linear(width, out_dim) head. Regression target: the output of a fixed random teacher."""

    def __init__(self, width: int, depth: int, out_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.head = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = F.gelu(layer(x))
        return self.head(x)
