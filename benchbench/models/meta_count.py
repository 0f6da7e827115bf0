"""Counting a model's parameters by building it on the ``meta`` device (torch; shapes only, no
memory): how a custom model, which only its own code describes, is counted
(:func:`benchbench.models.custom.params`, named in ``.importlinter``).
"""

from __future__ import annotations

from typing import Any

import torch


def meta_param_count(build: Any) -> int:
    """Parameters of the module ``build()`` returns, built on the ``meta`` device."""
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())
