"""One rank's run, in layers (after torchtitan's ``train`` → ``train_step`` →
``forward_backward_step``; the two lower layers are :mod:`benchbench.trainers`):

* :func:`run_rank` — the whole rank: the trainer, batches, timed loop, communication count,
  cross-rank reductions, then the correctness gate (:mod:`benchbench.verify`; after the
  measurements, so it adds nothing to peak memory), and on rank 0 the record;
* :func:`timed_loop` — per step: all ranks meet at a barrier, each times its own ``train_step``
  (device-synchronised on GPU); warm-up steps run and keep their loss but are not timed.

Every reduction across ranks happens after the loop (:mod:`benchbench.reductions`), so none is
timed; the step's time is the slowest rank's. Definitions: docs/METRICS.md.
"""

from __future__ import annotations

import gc
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchbench import memory
from benchbench.data import SyntheticTask
from benchbench.job import Job
from benchbench.metrics import METRICS, SUMMARY_NAMES, summarize
from benchbench.models import make_task, model_info
from benchbench.provenance import collect, device_name
from benchbench.record import make_record
from benchbench.reductions import gather_objects, reduce_named
from benchbench.rendezvous import RankEnv
from benchbench.strategies.comm_stats import CommCounter
from benchbench.strategies.plan import theoretical_bubble
from benchbench.trainers import PipelineTrainer, Trainer, build_trainer, shard_batch
from benchbench.verify import verify_first_step

GATE_METRICS = [n for n in SUMMARY_NAMES if n.startswith("verify_")]


def setup_device(job: Job, env: RankEnv) -> torch.device:
    """This rank's device, made current, with the job's thread count. On GPU: the local rank's
    GPU among those visible (``local_rank % device_count``: under Slurm's per-task GPU binding
    each rank sees one device, index 0). Call before joining an NCCL group."""
    torch.set_num_threads(job.threads_per_rank)
    if job.hardware_cfg.device != "cuda":
        return torch.device("cpu")
    visible = torch.cuda.device_count()
    if env.local_rank >= visible > 1:
        raise RuntimeError(f"local rank {env.local_rank} but only {visible} GPUs visible: two ranks would share one")
    device = torch.device("cuda", env.local_rank % visible)
    torch.cuda.set_device(device)
    return device


def make_batches(job: Job, task: SyntheticTask, dp_rank: int, device: torch.device) -> list[tuple[torch.Tensor, ...]]:
    """Every step's shard of the global batch for data-parallel rank ``dp_rank``, generated
    before the clock starts."""
    return [shard_batch(job, *task.batch(s, job.global_batch), dp_rank, device) for s in range(job.total_steps)]


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
    peak_source: str = ""  # set when the peak memory was reset, after warm-up (memory.reset_peak)


def timed_loop(
    trainer: Trainer | PipelineTrainer, batches: list, device: torch.device, distributed: bool, warmup: int = 0
) -> StepLog:
    """Run every step: barrier, then time this rank's ``train_step`` (device-synchronised), with
    the garbage collector off for the whole loop; the peak memory is reset after the ``warmup``
    steps, so that it covers the timed steps only."""
    log = StepLog()
    gc.collect()
    gc.disable()  # no collector pauses inside timed steps (re-enabled below, whatever happens)
    try:
        _run_steps(trainer, batches, device, distributed, log, warmup)
    finally:
        gc.enable()
    return log


def _run_steps(
    trainer: Trainer | PipelineTrainer, batches: list, device: torch.device, distributed: bool, log: StepLog,
    warmup: int = 0,
) -> None:
    import torch.distributed as dist

    for i, (x, y) in enumerate(batches):
        if i == warmup:
            log.peak_source = memory.reset_peak(device)
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


def count_comm(trainer: Trainer | PipelineTrainer, batch: tuple[torch.Tensor, ...]) -> float:
    """Bytes this rank hands to collectives in one extra, untimed step."""
    with CommCounter() as counter:
        trainer.train_step(*batch)
    return float(counter.bytes)


def memory_figures(job: Job, mem: dict[str, float], device: torch.device) -> dict[str, Any]:
    """The memory summary entries: each rank's measurements (:func:`benchbench.memory.measure`,
    with ``peak_mem_mb`` and ``peak_mem_source``) reduced as the registry says, and the estimates."""
    source = mem.pop("peak_mem_source")
    values = {k: torch.tensor([v], dtype=torch.float64) for k, v in mem.items()}
    r = reduce_named(values, {k: METRICS[k].across_ranks for k in mem}, device)
    return {
        **{k: float(v[0]) for k, v in r.items()},
        "peak_mem_source": source,
        "model_state_bytes_est": memory.model_state_estimate(job),
        "activation_bytes_est": memory.activation_estimate(job),
    }


def reduce_measurements(job: Job, log: StepLog, comm_bytes: float | None, device: torch.device) -> dict[str, Any]:
    """The job's figures from every rank's: per-step times, losses, blocked shares, memory and
    communication, each reduced as the metric registry declares (:data:`~benchbench.metrics.METRICS`)."""
    w = job.warmup_steps
    values = {
        name: torch.tensor(v, dtype=torch.float64)
        for name, v in (
            ("step_time_s", log.times[w:]),
            ("loss_sum", log.losses),
            ("loss_holders", log.holds_loss),
            ("blocked", log.blocked[w:]),
            ("comm_bytes_per_step", [comm_bytes or 0.0]),
        )
    }
    ops = {
        "step_time_s": METRICS["step_time_s"].across_ranks,
        "loss_sum": "sum",
        "loss_holders": "sum",  # mean over the ranks that hold a loss (METRICS["loss"])
        "blocked": METRICS["exposed_comm_fraction"].across_ranks,
        "comm_bytes_per_step": METRICS["comm_bytes_per_step"].across_ranks,
    }
    r = reduce_named(values, ops, device)
    return {
        "step_time_s": r["step_time_s"].tolist(),
        "loss": (r["loss_sum"] / r["loss_holders"]).tolist(),
        "blocked_median": float(np.median(r["blocked"].numpy())),
        "comm_bytes_per_step": float(r["comm_bytes_per_step"][0]) if comm_bytes is not None else None,
    }


def job_summary(
    job: Job, reduced: dict[str, Any], gate: dict[str, Any], device: torch.device, mem: dict[str, Any]
) -> dict[str, Any]:
    """The record's summary from the reduced figures and the gate's (docs/METRICS.md)."""
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
            **mem,
            "comm_bytes_per_step": comm,
            "comm_bytes_source": "measured" if comm is not None else "none",
            "exposed_comm_fraction": None if pipelined or not job.distributed else blocked,
            "bubble_fraction_measured": blocked if pipelined else None,
            "bubble_fraction_theoretical": theoretical_bubble(job.plan),
            **{k: gate.get(k) for k in GATE_METRICS},
        },
    )


def run_rank(job: Job, env: RankEnv, device: torch.device) -> dict[str, Any] | None:
    """Run ``job`` as rank ``env.rank`` on ``device`` (:func:`setup_device`); returns the ok record
    on rank 0, ``None`` elsewhere. The process group, if the plan needs one, must exist already."""
    task = make_task(job.model_cfg, job.seed)
    dp_rank = env.rank // (job.tp * job.pp)  # mesh (dp, pp, tp), tp innermost
    trainer = build_trainer(job, device, task.loss_fn)
    batches = make_batches(job, task, dp_rank, device)

    log = timed_loop(trainer, batches, device, job.distributed, job.warmup_steps)
    mem = memory_figures(job, memory.measure(trainer, batches[0], device, log.peak_source), device)
    comm_bytes = count_comm(trainer, batches[0]) if job.distributed else None
    reduced = reduce_measurements(job, log, comm_bytes, device)
    where = gather_objects((socket.gethostname(), device_name(device.type, device.index)))
    applied = trainer.applied
    # Free DDP/FSDP state (reference cycles) now, while its process group still exists:
    # collected at interpreter exit, after the group is destroyed, gloo aborts the process.
    del trainer
    gc.collect()
    # After the measurements, so its second model (and rank 0's reference) stay out of peak memory
    gate = verify_first_step(job, device, task, dp_rank, env.rank)
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
        applied=applied,
        step_time_s=reduced["step_time_s"],
        loss=reduced["loss"],
        summary=job_summary(job, reduced, gate or {}, device, mem),
    )
