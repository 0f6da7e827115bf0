"""Parallel strategies: a :class:`Plan` applied to a model by small steps in a fixed order.

:func:`parallelize` is the one place that composes a plan (after torchtitan's
``parallelize_llama``); each step is a small function in its own module, and the training loop
(:mod:`benchbench.bench`) only ever calls :meth:`Trainer.train_step`.

Order of application:

1. move the model to its device;
2. data parallelism last, over the whole (possibly already split) model: none, hand-written
   naive all-reduce (:class:`~benchbench.strategies.data_parallel.NaiveGradSync`) or DDP.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from benchbench.data import LossFn
from benchbench.strategies.data_parallel import NaiveGradSync, apply_ddp, grad_bytes
from benchbench.strategies.plan import PRESETS, Plan, infeasible_reason, resolve_plan, strategy_fields

__all__ = [
    "PRESETS",
    "Plan",
    "Trainer",
    "infeasible_reason",
    "parallelize",
    "resolve_plan",
    "strategy_fields",
]


@dataclass
class Trainer:
    """One rank's model, optimizer and the gradient synchronisation its plan needs."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: LossFn
    autocast_dtype: torch.dtype | None = None
    after_backward: Callable[[], None] | None = None
    comm_bytes: Callable[[], int] = field(default=lambda: 0)
    comm_bytes_source: str = "none"  # measured | analytic | none

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One optimizer step on this rank's shard; returns the rank's (detached) loss."""
        self.optimizer.zero_grad(set_to_none=True)
        device_type = inputs.device.type
        ctx = (
            torch.autocast(device_type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with ctx:
            out = self.model(inputs)
        loss = self.loss_fn(out, targets)
        loss.backward()
        if self.after_backward is not None:
            self.after_backward()
        self.optimizer.step()
        return loss.detach()


def make_optimizer(model: nn.Module, optim_cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """AdamW over the (possibly wrapped) model's parameters."""
    return torch.optim.AdamW(model.parameters(), lr=float(optim_cfg.get("lr", 1e-3)), weight_decay=0.0)


def parallelize(
    model: nn.Module,
    plan: Plan,
    device: torch.device,
    loss_fn: LossFn,
    optim_cfg: dict[str, Any],
    autocast_dtype: torch.dtype | None = None,
) -> Trainer:
    """Apply ``plan`` to ``model`` (see the module docstring for the order) and return its trainer."""
    model = model.to(device)
    payload = grad_bytes(model)

    if plan.dp_flavour == "none":
        return Trainer(model, make_optimizer(model, optim_cfg), loss_fn, autocast_dtype)
    if plan.dp_flavour == "naive":
        sync = NaiveGradSync(model)
        return Trainer(
            model,
            make_optimizer(model, optim_cfg),
            loss_fn,
            autocast_dtype,
            after_backward=sync,
            comm_bytes=lambda: sync.bytes_last_step,
            comm_bytes_source="measured",
        )
    if plan.dp_flavour == "ddp":
        wrapped = apply_ddp(model, device, plan.bucket_cap_mb)
        return Trainer(
            wrapped,
            make_optimizer(wrapped, optim_cfg),
            loss_fn,
            autocast_dtype,
            comm_bytes=lambda: payload,
            comm_bytes_source="analytic",
        )
    raise ValueError(f"unknown dp_flavour {plan.dp_flavour!r}")
