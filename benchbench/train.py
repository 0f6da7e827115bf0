"""Training on one rank: the trainers and the timed loop, in layers (after torchtitan's
``train`` → ``train_step`` → ``forward_backward_step``):

* :func:`run_rank` — the whole rank: device, trainer, batches, timed loop, communication count,
  cross-rank reductions, and on rank 0 the record;
* :func:`timed_loop` — per step: all ranks meet at a barrier, each times its own ``train_step``
  (device-synchronised on GPU); warm-up steps run and keep their loss but are not timed;
* ``Trainer.train_step`` / ``PipelineTrainer.train_step`` — one optimizer step, built from
  ``forward_backward_step`` over micro-steps or through the pipeline schedule.

Every reduction across ranks happens after the loop (:mod:`benchbench.reductions`), so none is
timed; the step's time is the slowest rank's. Definitions: docs/METRICS.md.
"""

from __future__ import annotations

import contextlib
import gc
import resource
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchbench.data import LossFn, SyntheticTask, shard
from benchbench.job import Job
from benchbench.metrics import METRICS, summarize
from benchbench.models import make_task, model_info
from benchbench.provenance import collect, device_name
from benchbench.record import make_record
from benchbench.reductions import gather_objects, reduce_named
from benchbench.rendezvous import RankEnv
from benchbench.strategies.comm_stats import CommCounter
from benchbench.strategies.parallelize import NoSync, parallelize
from benchbench.strategies.plan import theoretical_bubble

DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


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

    def forward_backward_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward and backward of one micro-step; gradients scaled by 1 / ``accum_steps``."""
        with _autocast(self.device, self.autocast_dtype):
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

    def forward_backward_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
        """Forward and backward of every micro-batch through the schedule; the micro-batch losses
        on the last stage's rank (the schedule scales gradients by 1 / micro-batches)."""
        losses: list[torch.Tensor] = []
        args = (inputs,) if self.has_first else ()
        with _autocast(self.device, self.autocast_dtype):
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


def build_trainer(job: Job, device: torch.device, loss_fn: LossFn) -> Trainer | PipelineTrainer:
    """Apply the job's plan (:func:`~benchbench.strategies.parallelize.parallelize`) and wrap
    this rank's share in the trainer that fits it."""
    p = parallelize(job, device, loss_fn)
    dtype = DTYPES[job.dtype]
    if p.schedule is not None:
        return PipelineTrainer(p.schedule, p.optimizer, device, p.has_first_stage, p.has_last_stage, dtype)
    (model,) = p.modules
    return Trainer(model, p.optimizer, loss_fn, device, dtype, job.plan.accum_steps, p.after_backward, p.no_sync)


def setup_device(job: Job, env: RankEnv) -> torch.device:
    """This rank's device (``cuda:LOCAL_RANK`` on GPU profiles), with the job's thread count."""
    torch.set_num_threads(job.threads_per_rank)
    if job.hardware_cfg.device != "cuda":
        return torch.device("cpu")
    device = torch.device(f"cuda:{env.local_rank}")
    torch.cuda.set_device(device)
    return device


def make_batches(job: Job, task: SyntheticTask, dp_rank: int, device: torch.device) -> list[tuple[torch.Tensor, ...]]:
    """Every step's shard of the global batch for data-parallel rank ``dp_rank``, generated
    before the clock starts."""
    batches = []
    for step in range(job.warmup_steps + job.steps):
        x, y = task.batch(step, job.global_batch)
        batches.append((shard(x, dp_rank, job.dp).to(device), shard(y, dp_rank, job.dp).to(device)))
    return batches


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepLog:
    """What one rank saw of each step, warm-up included."""

    times: list[float] = field(default_factory=list)  # wall seconds of train_step
    blocked: list[float] = field(default_factory=list)  # 1 - main-thread CPU time / wall time
    losses: list[float] = field(default_factory=list)  # this rank's loss, 0 where it holds none
    holds_loss: list[float] = field(default_factory=list)  # 1 where this rank holds a loss


def timed_loop(trainer: Trainer | PipelineTrainer, batches: list, device: torch.device, distributed: bool) -> StepLog:
    """Run every step: barrier, then time this rank's ``train_step`` (device-synchronised)."""
    import torch.distributed as dist

    log = StepLog()
    for x, y in batches:
        if distributed:
            dist.barrier()
        _sync(device)
        c0, t0 = time.thread_time(), time.perf_counter()
        loss = trainer.train_step(x, y)
        _sync(device)
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        log.times.append(wall)
        log.blocked.append(max(0.0, 1.0 - cpu / wall) if wall > 0 else 0.0)
        log.losses.append(float(loss.detach().double().cpu()) if loss is not None else 0.0)
        log.holds_loss.append(1.0 if loss is not None else 0.0)
    return log


def count_comm(trainer: Trainer | PipelineTrainer, batch: tuple[torch.Tensor, ...]) -> float:
    """Bytes this rank hands to collectives in one extra, untimed step."""
    with CommCounter() as counter:
        trainer.train_step(*batch)
    return float(counter.bytes)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """This process's peak memory: the CUDA allocator's peak on GPU, peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_allocator"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss"  # Linux: KiB


def reduce_measurements(job: Job, log: StepLog, comm_bytes: float | None, device: torch.device) -> dict[str, Any]:
    """The job's figures from every rank's: per-step times, losses, blocked shares, memory and
    communication, each reduced as the metric registry declares (:data:`~benchbench.metrics.METRICS`)."""
    w = job.warmup_steps
    blocked_op = METRICS["exposed_comm_fraction"].across_ranks
    values = {
        name: torch.tensor(v, dtype=torch.float64)
        for name, v in (
            ("step_time_s", log.times[w:]),
            ("loss_sum", log.losses),
            ("loss_holders", log.holds_loss),
            ("blocked", log.blocked[w:]),
            ("peak_mem_mb", [peak_memory_mb(device)[0]]),
            ("comm_bytes_per_step", [comm_bytes or 0.0]),
        )
    }
    ops = {
        "step_time_s": METRICS["step_time_s"].across_ranks,
        "loss_sum": "sum",
        "loss_holders": "sum",  # mean over the ranks that hold a loss (METRICS["loss"])
        "blocked": blocked_op,
        "peak_mem_mb": METRICS["peak_mem_mb"].across_ranks,
        "comm_bytes_per_step": METRICS["comm_bytes_per_step"].across_ranks,
    }
    r = reduce_named(values, ops, device)
    return {
        "step_time_s": r["step_time_s"].tolist(),
        "loss": (r["loss_sum"] / r["loss_holders"]).tolist(),
        "blocked_median": float(np.median(r["blocked"].numpy())),
        "peak_mem_mb": float(r["peak_mem_mb"][0]),
        "comm_bytes_per_step": float(r["comm_bytes_per_step"][0]) if comm_bytes is not None else None,
    }


def job_summary(job: Job, reduced: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The record's summary from the reduced figures (docs/METRICS.md)."""
    info = model_info(job.model_cfg)
    pipelined = job.pp > 1
    blocked = reduced["blocked_median"] if device.type == "cpu" else None
    comm = reduced["comm_bytes_per_step"]
    return summarize(
        step_times=reduced["step_time_s"],
        global_batch=job.global_batch,
        world_size=job.world_size,
        tokens_per_sample=info.tokens_per_sample,
        train_flops_per_sample=info.train_flops_per_sample,
        params=info.params,
        peak_flops=job.hardware_cfg.peak(job.dtype),
        measured={
            "peak_mem_mb": reduced["peak_mem_mb"],
            "peak_mem_source": peak_memory_mb(device)[1],
            "comm_bytes_per_step": comm,
            "comm_bytes_source": "measured" if comm is not None else "none",
            "exposed_comm_fraction": None if pipelined or not job.distributed else blocked,
            "bubble_fraction_measured": blocked if pipelined else None,
            "bubble_fraction_theoretical": theoretical_bubble(job.plan),
        },
    )


def run_rank(job: Job, env: RankEnv) -> dict[str, Any] | None:
    """Run ``job`` as rank ``env.rank``; returns the ok record on rank 0, ``None`` elsewhere.

    The process group, if the plan needs one, must already be initialised."""
    device = setup_device(job, env)
    task = make_task(job.model_cfg, job.seed)
    trainer = build_trainer(job, device, task.loss_fn)
    dp_rank = env.rank // (job.tp * job.pp)  # mesh (dp, pp, tp), tp innermost
    batches = make_batches(job, task, dp_rank, device)

    log = timed_loop(trainer, batches, device, job.distributed)
    comm_bytes = count_comm(trainer, batches[0]) if job.distributed else None
    reduced = reduce_measurements(job, log, comm_bytes, device)
    where = gather_objects((socket.gethostname(), device_name(device.type, device.index)))
    # Free DDP/FSDP state (reference cycles) now, while its process group still exists:
    # collected at interpreter exit, after the group is destroyed, gloo aborts the process.
    del trainer
    gc.collect()
    if env.rank != 0:
        return None
    provenance = collect(
        backend=job.hardware_cfg.backend if job.distributed else None,
        device_type=device.type,
        device_names=sorted({n for _, n in where}),
        hosts=sorted({h for h, _ in where}),
        ranks=env.world_size,
        threads=job.threads_per_rank,
        launcher=env.launcher,
    )
    return make_record(
        job=job,
        status="ok",
        env=provenance,
        step_time_s=reduced["step_time_s"],
        loss=reduced["loss"],
        summary=job_summary(job, reduced, device),
    )
