"""Parallel strategies: a :class:`Plan` applied to a model by small steps in a fixed order.

:func:`parallelize` is the one place that composes a plan (after torchtitan's
``parallelize_llama``); each step is a small function in its own module, and the training loop
(:mod:`benchbench.bench`) only ever calls ``train_step``.

Order of application, over the named device mesh ``(dp, pp, tp)`` (tp innermost):

1. pipeline split — this rank's stages, each pruned from the full seeded model
   (:mod:`~benchbench.strategies.pipeline_parallel`);
2. tensor (and sequence) parallel over the ``tp`` mesh dimension
   (:mod:`~benchbench.strategies.tensor_parallel`);
3. data parallel over ``dp``, outermost: naive all-reduce, DDP (+ compression hook), ZeRO-1 or
   FSDP2 (:mod:`~benchbench.strategies.data_parallel`, :mod:`~benchbench.strategies.compression`,
   :mod:`~benchbench.strategies.sharded`); skipped when dp = 1 under tp or pp;
4. the optimizer (AdamW; sharded for ZeRO-1) and, for pipelines, the schedule.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benchbench.data import LossFn
from benchbench.models import build_model
from benchbench.strategies.compression import register_compression
from benchbench.strategies.data_parallel import NaiveGradSync, apply_ddp
from benchbench.strategies.pipeline_parallel import build_stage_module, make_schedule, make_stage, stage_ids
from benchbench.strategies.plan import (
    PRESETS,
    Plan,
    infeasible_reason,
    resolve_plan,
    strategy_fields,
    theoretical_bubble,
)
from benchbench.strategies.sharded import apply_fsdp, fsdp_no_sync, zero1_optimizer
from benchbench.strategies.tensor_parallel import apply_tp

__all__ = [
    "PRESETS",
    "Plan",
    "infeasible_reason",
    "parallelize",
    "resolve_plan",
    "strategy_fields",
    "theoretical_bubble",
]


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


@dataclass
class Trainer:
    """One rank's model and optimizer for plans without a pipeline; ``accum_steps`` micro-steps
    per optimizer step, gradient synchronisation suppressed (``no_sync``) on all but the last."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: LossFn
    device: torch.device
    autocast_dtype: torch.dtype | None = None
    accum_steps: int = 1
    after_backward: Callable[[], None] | None = None
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """One optimizer step on this rank's shard; returns its loss (mean over the shard)."""
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        n = self.accum_steps
        for i, (x, y) in enumerate(zip(inputs.chunk(n), targets.chunk(n), strict=True)):
            with self.no_sync() if i < n - 1 else contextlib.nullcontext():
                with _autocast(self.device, self.autocast_dtype):
                    out = self.model(x)
                loss = self.loss_fn(out, y) / n
                loss.backward()
            total += loss.detach()
        if self.after_backward is not None:
            self.after_backward()
        self.optimizer.step()
        return total


@dataclass
class PipelineTrainer:
    """One pipeline rank: its stages, the schedule over micro-batches, and the optimizer."""

    schedule: Any
    optimizer: torch.optim.Optimizer
    device: torch.device
    has_first: bool
    has_last: bool
    autocast_dtype: torch.dtype | None = None

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """One optimizer step; returns the loss (mean over micro-batches) on the last stage's rank."""
        self.optimizer.zero_grad(set_to_none=True)
        losses: list[torch.Tensor] = []
        args = (inputs,) if self.has_first else ()
        with _autocast(self.device, self.autocast_dtype):
            if self.has_last:
                self.schedule.step(*args, target=targets, losses=losses)
            else:
                self.schedule.step(*args)
        self.optimizer.step()
        return torch.stack([v.detach().float() for v in losses]).mean() if self.has_last else None


@contextlib.contextmanager
def _all(contexts: list[Callable[[], contextlib.AbstractContextManager]]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for c in contexts:
            stack.enter_context(c())
        yield


def make_mesh(plan: Plan, device: torch.device) -> Any:
    """The named ``(dp, pp, tp)`` device mesh over all ranks (tp innermost)."""
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device.type, (plan.dp, plan.pp, plan.tp), mesh_dim_names=("dp", "pp", "tp"))


def apply_data_parallel(
    module: nn.Module, plan: Plan, mesh: Any, device: torch.device
) -> tuple[nn.Module, Callable[[], contextlib.AbstractContextManager] | None, Callable[[], None] | None]:
    """Step 3: wrap ``module`` for data parallelism; returns (module, no_sync, after_backward)."""
    group = mesh["dp"].get_group()
    if plan.dp_flavour == "naive":
        return module, None, NaiveGradSync(module, group)
    if plan.dp_flavour in ("ddp", "zero1"):
        ddp = apply_ddp(module, device, group, plan.bucket_cap_mb, plan.static_graph)
        register_compression(ddp, plan.compression, group, plan.powersgd_rank, plan.powersgd_warmup)
        return ddp, ddp.no_sync, None
    if plan.dp_flavour == "fsdp":
        module = apply_fsdp(module, mesh["dp"], plan.reshard_after_forward)
        return module, lambda: fsdp_no_sync(module), None
    raise ValueError(f"unknown dp_flavour {plan.dp_flavour!r}")


def parallelize(
    job: dict[str, Any],
    device: torch.device,
    loss_fn: LossFn,
    autocast_dtype: torch.dtype | None = None,
) -> Trainer | PipelineTrainer:
    """Apply the job's plan (see the module docstring for the order) and return this rank's trainer."""
    plan = Plan.from_dict(job["plan"])
    lr = float(job.get("optimizer", {}).get("lr", 1e-3))
    if plan.single_process:
        torch.manual_seed(job["seed"])  # identical initial weights on every rank and strategy
        model = build_model(job["model_cfg"]).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        return Trainer(model, opt, loss_fn, device, autocast_dtype, plan.accum_steps)

    mesh = make_mesh(plan, device)
    wrap_dp = plan.dp > 1 or (plan.tp == 1 and plan.pp == 1)

    # 1. pipeline split: this rank's stages (one full model when pp = 1)
    if plan.pp > 1:
        n_stages = plan.pp * plan.virtual_stages
        ids = stage_ids(mesh["pp"].get_local_rank(), plan.pp, plan.virtual_stages, plan.schedule)
        modules = [build_stage_module(job["model_cfg"], job["seed"], s, n_stages).to(device) for s in ids]
    else:
        torch.manual_seed(job["seed"])  # identical initial weights on every rank and strategy
        modules = [build_model(job["model_cfg"]).to(device)]

    no_syncs, syncs = [], []
    for i, module in enumerate(modules):
        # 2. tensor / sequence parallel
        if plan.tp > 1:
            module = apply_tp(module, mesh["tp"], plan.sequence_parallel)
        # 3. data parallel, outermost
        if wrap_dp:
            module, no_sync, sync = apply_data_parallel(module, plan, mesh, device)
            no_syncs += [no_sync] if no_sync else []
            syncs += [sync] if sync else []
        modules[i] = module

    # 4. optimizer and, for pipelines, the schedule
    params = [p for m in modules for p in m.parameters()]
    if plan.dp_flavour == "zero1" and wrap_dp:
        opt = zero1_optimizer(params, mesh["dp"].get_group(), lr)
    else:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    if plan.pp > 1:
        pp_group = mesh["pp"].get_group()
        stages = [make_stage(m, s, n_stages, device, pp_group) for m, s in zip(modules, ids, strict=True)]
        schedule = make_schedule(plan.schedule, stages, plan.micro_batches, loss_fn)
        return PipelineTrainer(schedule, opt, device, 0 in ids, n_stages - 1 in ids, autocast_dtype)

    (model,) = modules
    after = (lambda: [s() for s in syncs]) if syncs else None
    return Trainer(model, opt, loss_fn, device, autocast_dtype, plan.accum_steps, after, lambda: _all(no_syncs))
