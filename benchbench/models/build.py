"""Building a model's ``nn.Module``s (torch): the one place the models folder turns a config into
modules. :func:`build_model` builds any architecture of the registry, by default on the ``meta``
device (shapes only, no memory). The registry, the formulas and the analytic tensors stay
torch-free (:mod:`benchbench.models.registry`); the workflow side reaches this module only for a
custom model's per-rank tensors (:mod:`benchbench.models.accounting`, named in ``.importlinter``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from benchbench.models.registry import ARCHITECTURES, resolve, size_args


def build_model(model_cfg: dict[str, Any], device: torch.device | str = "meta") -> nn.Module:
    """Build the ``nn.Module`` for a model config, by default on the ``meta`` device: plans shard it
    first, then :func:`benchbench.models.weights.init_weights` fills what each rank holds."""
    builder = resolve(ARCHITECTURES[model_cfg["arch"]].build)
    with torch.device(device):
        return builder(**size_args(model_cfg))
