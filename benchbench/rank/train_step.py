"""One training step on one rank (the trainers), in layers (after torchtitan's ``train_step`` →
``forward_backward_step``), for plans without a pipeline (:class:`Trainer`) and with one
(:class:`PipelineTrainer`). :func:`build_trainer` applies the job's plan and wraps the result.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from benchbench.models.tasks import LossFn, shard
from benchbench.spec.job import Job
from benchbench.strategies.composition import applied_composition
from benchbench.strategies.parallelize import NoSync, parallelize

DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def whole_sequence(x: torch.Tensor, y: torch.Tensor) -> contextlib.AbstractContextManager:
    """The step context of plans without context parallel: the micro-batch as it is."""
    return contextlib.nullcontext((x, y))


@dataclass
class Trainer:
    """One rank's model and optimizer for plans without a pipeline; ``accum_steps`` micro-steps
    per optimizer step, gradient synchronisation suppressed (``no_sync``) on all but the last."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: LossFn
    device: torch.device
    autocast_dtype: torch.dtype | None = None
    accum_steps: int = 1
    after_backward: Any = None  # Callable[[], None] | None
    no_sync: NoSync = contextlib.nullcontext
    applied: list[str] = field(default_factory=list)  # the composition read back from the built model
    grad_syncs: list[Any] = field(default_factory=list)  # hand-written gradient syncs (dp-naive)
    step_context: Any = whole_sequence  # (x, y) -> context yielding this rank's (x, y): context parallel

    @property
    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def forward_backward_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward and backward of one micro-step; gradients scaled by 1 / ``accum_steps``. Under
        context parallel both run inside the plan's context, on this rank's share of the sequence."""
        with self.step_context(x, y) as (x, y):
            with autocast(self.device, self.autocast_dtype):
                out = self.model(x)
            loss = self.loss_fn(out, y) / self.accum_steps
            loss.backward()
        return loss.detach()

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """One optimizer step on this rank's shard; returns its loss (mean over the shard)."""
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        n = self.accum_steps
        for i, (x, y) in enumerate(zip(inputs.chunk(n), targets.chunk(n), strict=True)):
            with self.no_sync() if i < n - 1 else contextlib.nullcontext():
                total += self.forward_backward_step(x, y)
        if self.after_backward is not None:
            self.after_backward()
        self.optimizer.step()
        return total


@dataclass
class PipelineTrainer:
    """One pipeline rank: its stages' schedule over micro-batches, and the optimizer."""

    schedule: Any
    optimizer: torch.optim.Optimizer
    device: torch.device
    has_first: bool
    has_last: bool
    autocast_dtype: torch.dtype | None = None
    modules: list[torch.nn.Module] = field(default_factory=list)  # this rank's stages
    applied: list[str] = field(default_factory=list)
    grad_syncs: list[Any] = field(default_factory=list)

    def forward_backward_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
        """Forward and backward of every micro-batch through the schedule; the micro-batch losses
        on the last stage's rank (the schedule scales gradients by 1 / micro-batches)."""
        losses: list[torch.Tensor] = []
        args = (inputs,) if self.has_first else ()
        with autocast(self.device, self.autocast_dtype):
            if self.has_last:
                self.schedule.step(*args, target=targets, losses=losses)
            else:
                self.schedule.step(*args)
        return losses

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        """One optimizer step; returns the loss (mean over micro-batches) on the last stage's rank."""
        self.optimizer.zero_grad(set_to_none=True)
        losses = self.forward_backward_step(inputs, targets)
        self.optimizer.step()
        return torch.stack([v.detach().float() for v in losses]).mean() if self.has_last else None


def build_trainer(
    job: Job, device: torch.device, loss_fn: LossFn, optimizer: str = "adamw", lr: float | None = None
) -> Trainer | PipelineTrainer:
    """Apply the job's plan (:func:`~benchbench.strategies.parallelize.parallelize`, with
    ``optimizer`` at ``lr``, default the job's) and wrap this rank's share in the trainer that fits."""
    p = parallelize(job, device, loss_fn, optimizer, job.lr if lr is None else lr)
    dtype = DTYPES[job.dtype]
    applied = applied_composition(p, job)
    if p.schedule is not None:
        return PipelineTrainer(
            p.schedule,
            p.optimizer,
            device,
            p.has_first_stage,
            p.has_last_stage,
            dtype,
            p.modules,
            applied,
            p.grad_syncs,
        )
    (model,) = p.modules
    return Trainer(
        model,
        p.optimizer,
        loss_fn,
        device,
        dtype,
        job.plan.accum_steps,
        p.after_backward,
        p.no_sync,
        applied,
        p.grad_syncs,
        p.step_context or whole_sequence,
    )


def shard_batch(
    job: Job, x: torch.Tensor, y: torch.Tensor, dp_rank: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Data-parallel rank ``dp_rank``'s rows of a global batch, on ``device``: copies, so that the
    rank does not keep the whole global batch alive behind a view of it."""
    return shard(x, dp_rank, job.dp).to(device, copy=True), shard(y, dp_rank, job.dp).to(device, copy=True)
