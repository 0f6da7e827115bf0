"""Parallel strategies: a strategy is a named preset of a :class:`Plan` (``plan.py``, no torch);
:func:`parallelize` (``parallelize.py``) applies a plan to a model in one documented order, each
step a small module of its own: ``data_parallel``, ``compression``, ``sharded``,
``tensor_parallel``, ``pipeline_parallel`` (schedules: ``schedules.py``); ``comm_stats`` counts
the bytes they communicate.

Importing this package imports no torch: :func:`parallelize` is loaded on first use.
"""

from __future__ import annotations

from typing import Any

from benchbench.strategies.plan import (
    PRESETS,
    Plan,
    infeasible_reason,
    resolve_plan,
    strategy_fields,
    theoretical_bubble,
)

__all__ = [
    "PRESETS",
    "Plan",
    "infeasible_reason",
    "parallelize",
    "resolve_plan",
    "strategy_fields",
    "theoretical_bubble",
]


def __getattr__(name: str) -> Any:
    if name == "parallelize":
        from benchbench.strategies.parallelize import parallelize

        return parallelize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
