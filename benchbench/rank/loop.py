"""One rank's run, in layers (after torchtitan's ``train`` → ``train_step`` →
``forward_backward_step``; the two lower layers are :mod:`benchbench.rank.train_step`):

* :func:`run_rank` — the whole rank: the trainer, batches, timed loop, communication count,
  cross-rank reductions, then the correctness gate (:mod:`benchbench.rank.gate`; after the
  measurements, so it adds nothing to peak memory), and on rank 0 the record;
* :func:`timed_loop` — per step: all ranks meet at a barrier, each times its own ``train_step``
  (device-synchronised on GPU); warm-up steps run and keep their loss but are not timed.

Every reduction across ranks happens after the loop (:mod:`benchbench.rank.reductions`), so none is
timed; the step's time is the slowest rank's. Definitions: docs/METRICS.md.
"""

from __future__ import annotations

import functools
import gc
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchbench.costmodel.memory import activation_estimate, activation_peak_estimate, model_state_estimate
from benchbench.models.registry import make_task, model_info
from benchbench.models.tasks import SyntheticTask
from benchbench.protocol import heartbeat
from benchbench.protocol.record import make_record
from benchbench.rank.environment import collect, device_name
from benchbench.rank.gate import verify_first_step
from benchbench.rank.measure import memory
from benchbench.rank.measure.bubble import step_bubbles
from benchbench.rank.measure.comm_stats import merge_ranks
from benchbench.rank.measure.exposed import exposed_figures
from benchbench.rank.measure.probes import bubble_rounds, count_step, exposed_rounds
from benchbench.rank.reductions import gather_objects, reduce_named
from benchbench.rank.rendezvous import RankEnv
from benchbench.rank.train_step import PipelineTrainer, Trainer, build_trainer, shard_batch
from benchbench.spec.job import Job
from benchbench.spec.metrics import METRICS, SUMMARY_NAMES, summarize
from benchbench.spec.plan import theoretical_bubble
from benchbench.strategies.compiled import compile_counters

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


class Batches(Sequence):
    """Every step's shard of the global batch for data-parallel rank ``dp_rank``, generated when
    the step asks for it — before its barrier, so untimed — so that one step's batch is on the
    device at a time, not the whole run's. The batch of step k depends only on the seed and k."""

    def __init__(self, job: Job, task: SyntheticTask, dp_rank: int, device: torch.device) -> None:
        self.job, self.task, self.dp_rank, self.device = job, task, dp_rank, device

    def __len__(self) -> int:
        return self.job.total_steps

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"step {i} of {len(self)}")
        step = i % len(self)
        return shard_batch(self.job, *self.task.batch(step, self.job.global_batch), self.dp_rank, self.device)


def make_batches(job: Job, task: SyntheticTask, dp_rank: int, device: torch.device) -> Batches:
    """This rank's batches of every step (:class:`Batches`)."""
    return Batches(job, task, dp_rank, device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepLog:
    """What one rank saw of each step, warm-up included."""

    times: list[float] = field(default_factory=list)  # wall seconds of train_step
    blocked: list[float] = field(default_factory=list)  # PROXY: 1 - main-thread CPU time / wall time
    losses: list[float] = field(default_factory=list)  # this rank's loss, 0 where it holds none
    holds_loss: list[float] = field(default_factory=list)  # 1 where this rank holds a loss
    peak_source: str = ""  # set when the peak memory was reset, after warm-up (memory.reset_peak)
    # torch's compile (events, seconds) so far: before the first step, after warm-up, after the last
    compile_marks: list[tuple[int, float]] = field(default_factory=list)


def timed_loop(
    trainer: Trainer | PipelineTrainer, batches: Sequence, device: torch.device, distributed: bool, warmup: int = 0
) -> StepLog:
    """Run every step: barrier, then time this rank's ``train_step`` (device-synchronised), with
    the garbage collector off for the whole loop; the peak memory is reset after the ``warmup``
    steps, so that it covers the timed steps only."""
    log = StepLog()
    gc.collect()
    gc.disable()  # no collector pauses inside timed steps (re-enabled below, whatever happens)
    log.compile_marks.append(compile_counters())
    try:
        _run_steps(trainer, batches, device, distributed, log, warmup)
    finally:
        gc.enable()
    log.compile_marks.append(compile_counters())
    return log


def _run_steps(
    trainer: Trainer | PipelineTrainer,
    batches: Sequence,
    device: torch.device,
    distributed: bool,
    log: StepLog,
    warmup: int = 0,
) -> None:
    import torch.distributed as dist

    for i, (x, y) in enumerate(batches):
        if i == warmup:
            log.peak_source = memory.reset_peak(device)
            log.compile_marks.append(compile_counters())
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
        heartbeat.step(i, len(batches), wall)  # after the timing: the parent's watchdog reads it


@dataclass
class Probes:
    """This rank's raw figures from the extra, untimed steps (:mod:`benchbench.rank.measure.probes`)."""

    comm: list[dict[str, Any]] = field(default_factory=list)
    flops: float | None = None
    paired: tuple[list[float], list[float]] | None = None  # step times with / without gradient sync
    timeline: dict[str, Any] | None = None  # pipeline: actions and walls per extra step


def run_probes(job: Job, trainer: Trainer | PipelineTrainer, batch: tuple, device: torch.device) -> Probes:
    """The extra steps after the timed ones: counting, exposed communication, pipeline timeline."""
    counted = count_step(job, trainer, batch, device)
    probes = Probes(comm=counted["comm"], flops=counted["flops"])
    if job.distributed:
        probes.paired = exposed_rounds(job, trainer, batch, device)
    if isinstance(trainer, PipelineTrainer):
        probes.timeline = bubble_rounds(job, trainer, batch, device)
    return probes


def memory_figures(job: Job, mem: dict[str, float], device: torch.device) -> dict[str, Any]:
    """The memory summary entries: each rank's measurements (:func:`benchbench.rank.measure.memory.measure`,
    with ``peak_mem_mb`` and ``peak_mem_source``) reduced as the registry says, and the estimates."""
    source = mem.pop("peak_mem_source")
    values = {k: torch.tensor([v], dtype=torch.float64) for k, v in mem.items()}
    r = reduce_named(values, {k: METRICS[k].across_ranks for k in mem}, device)
    return {
        **{k: float(v[0]) for k, v in r.items()},
        "peak_mem_source": source,
        "model_state_bytes_est": model_state_estimate(job),
        "activation_bytes_est": activation_estimate(job),
        "activation_peak_bytes_est": activation_peak_estimate(job),
    }


def reduce_measurements(job: Job, log: StepLog, probes: Probes, device: torch.device) -> dict[str, Any]:
    """The job's figures from every rank's: per-step times, losses, the blocked-time proxy,
    executed FLOPs and paired step times, each reduced as the metric registry declares
    (:data:`~benchbench.spec.metrics.METRICS`); the communication table and the pipeline timeline are
    gathered whole."""
    w = job.warmup_steps
    on, off = probes.paired or ([], [])
    series = {
        "step_time_s": (log.times[w:], METRICS["step_time_s"].across_ranks),
        "loss_sum": (log.losses, "sum"),
        "loss_holders": (log.holds_loss, "sum"),  # mean over the ranks that hold a loss (METRICS["loss"])
        "blocked": (log.blocked[w:], METRICS["blocked_fraction_proxy"].across_ranks),
        "flops": ([probes.flops or 0.0], METRICS["hardware_flops_per_step"].across_ranks),
        "comm_payload": ([sum(c["payload_bytes"] for c in probes.comm)], METRICS["comm_bytes_per_step"].across_ranks),
        "comm_bus": ([sum(c["bus_bytes"] for c in probes.comm)], METRICS["comm_bus_bytes_per_step"].across_ranks),
        "paired_on": (on or [0.0], "max"),  # each paired step: the slowest rank's time
        "paired_off": (off or [0.0], "max"),
        # compile: seconds torch compiled during warm-up, compile events during the timed steps
        "compile_s": ([log.compile_marks[1][1] - log.compile_marks[0][1]], METRICS["compile_time_s"].across_ranks),
        "compile_events": ([log.compile_marks[2][0] - log.compile_marks[1][0]], "max"),
    }
    r = reduce_named(
        {k: torch.tensor(v, dtype=torch.float64) for k, (v, _) in series.items()},
        {k: op for k, (_, op) in series.items()},
        device,
    )
    comm = merge_ranks(gather_objects(probes.comm)) if job.distributed else []
    timelines = gather_objects(probes.timeline) if job.pp > 1 else None
    return {
        "step_time_s": r["step_time_s"].tolist(),
        "loss": (r["loss_sum"] / r["loss_holders"]).tolist(),
        "blocked_median": float(np.median(r["blocked"].numpy())),
        "hardware_flops_per_step": float(r["flops"][0]) or None,
        "comm": comm,
        "comm_payload": float(r["comm_payload"][0]),
        "comm_bus": float(r["comm_bus"][0]),
        "exposed": exposed_figures(r["paired_on"].numpy(), r["paired_off"].numpy()) if probes.paired else None,
        "bubble": _bubbles(timelines, job) if timelines else None,
        "compile": (float(r["compile_s"][0]), int(r["compile_events"][0])) if job.plan.compile else (None, None),
    }


def _bubbles(timelines: list[dict[str, Any]], job: Job) -> tuple[float, float | None]:
    """(measured, simulated) pipeline bubble: per extra step, each pipeline (the ranks sharing a
    dp and tp coordinate of the (dp, pp, tp) mesh) on its own, averaged; median over steps."""
    n_stages = job.pp * job.plan.virtual_stages
    pipelines: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for rank, t in enumerate(timelines):
        pipelines.setdefault((rank // (job.pp * job.tp), rank % job.tp), []).append(t)
    measured, simulated = [], []
    for i in range(len(timelines[0]["walls"])):
        per = [
            step_bubbles([t["actions"][i] for t in p], [t["walls"][i] for t in p], n_stages) for p in pipelines.values()
        ]
        measured.append(float(np.mean([m for m, _ in per])))
        if all(s is not None for _, s in per):
            simulated.append(float(np.mean([s for _, s in per])))
    return float(np.median(measured)), float(np.median(simulated)) if simulated else None


def _matmul_precision(device: torch.device) -> str:
    """How fp32 matmuls run on ``device``: ``tf32`` or ``bf16`` where torch lets them (GPU), else ``fp32``."""
    if device.type != "cuda":
        return "fp32"
    if torch.get_float32_matmul_precision() == "medium":
        return "bf16"
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() == "high"
    return "tf32" if tf32 else "fp32"


def job_summary(
    job: Job, reduced: dict[str, Any], gate: dict[str, Any], device: torch.device, mem: dict[str, Any]
) -> dict[str, Any]:
    """The record's summary from the reduced figures and the gate's (docs/METRICS.md)."""
    info = model_info(job.model_cfg)
    exposed = reduced["exposed"] or (None, None)
    bubble = reduced["bubble"] or (None, None)
    precision = job.hardware_cfg.mfu_precision(job.dtype, _matmul_precision(device))
    return summarize(
        step_times=reduced["step_time_s"],
        global_batch=job.global_batch,
        world_size=job.world_size,
        tokens_per_sample=info.tokens_per_sample,
        train_flops_per_sample=info.train_flops_per_sample,
        params=info.params,
        peak_flops=job.hardware_cfg.peak(precision),
        measured={
            "mfu_precision": precision,
            "hardware_flops_per_step": reduced["hardware_flops_per_step"],
            **mem,
            "comm_bytes_per_step": reduced["comm_payload"] if job.distributed else None,
            "comm_bus_bytes_per_step": reduced["comm_bus"] if job.distributed else None,
            "comm_bytes_source": "measured" if job.distributed else "none",
            "exposed_comm_s": exposed[0],
            "exposed_comm_fraction": exposed[1],
            "blocked_fraction_proxy": reduced["blocked_median"] if device.type == "cpu" and job.distributed else None,
            "bubble_fraction_measured": bubble[0],
            "bubble_fraction_simulated": bubble[1],
            "bubble_fraction_theoretical": theoretical_bubble(job.plan),
            "compile_time_s": reduced["compile"][0],
            "compile_events_timed": reduced["compile"][1],
            **{k: gate.get(k) for k in GATE_METRICS},
        },
    )


def _provenance(job: Job, env: RankEnv, device: torch.device, where: list[tuple[str, str]]) -> dict[str, Any]:
    return collect(
        backend=job.hardware_cfg.backend if job.distributed else None,
        device_type=device.type,
        device_names=sorted({n for _, n in where}),
        hosts=sorted({h for h, _ in where}),
        ranks=env.world_size,
        threads=job.threads_per_rank,
        launcher=env.launcher,
    )


@functools.cache
def freeze_imports() -> None:
    """Once per process, before the first job builds anything: move every object alive now to the
    collector's permanent generation — torch, benchbench and torch's compiler stack (imported here:
    torch.optim's first step imports it in every job anyway), about 290,000 objects. Every later
    ``gc.collect()`` (four per job: before the timed loop, after it, in the gate, and between a
    batch's jobs) then scans only what the jobs created: 0.14 s each → microseconds on this
    machine (modules a plan imports later are not frozen: after a compile plan's inductor stack,
    ~0.05 s each for the rest of a batch). What is frozen lives as long as the process anyway
    (modules, classes, the process group); no collection first (0.14 s): the imports leave next to no cyclic garbage."""
    import torch._dynamo  # noqa: F401

    gc.freeze()


def run_rank(job: Job, env: RankEnv, device: torch.device) -> dict[str, Any] | None:
    """Run ``job`` as rank ``env.rank`` on ``device`` (:func:`setup_device`); returns the ok record
    on rank 0, ``None`` elsewhere. The process group, if the plan needs one, must exist already."""
    freeze_imports()
    task = make_task(job.model_cfg, job.seed)
    dp_rank = env.rank // (job.tp * job.pp * job.plan.cp)  # mesh (dp, pp, cp, tp), tp innermost
    trainer = build_trainer(job, device, task.loss_fn)
    batches = make_batches(job, task, dp_rank, device)

    log = timed_loop(trainer, batches, device, job.distributed, job.warmup_steps)
    mem = memory_figures(job, memory.measure(trainer, batches[0], device, log.peak_source), device)
    probes = run_probes(job, trainer, batches[job.warmup_steps], device)
    reduced = reduce_measurements(job, log, probes, device)
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
    return make_record(
        job=job,
        status="ok",
        env=_provenance(job, env, device, where),
        applied=applied,
        comm=reduced["comm"],
        step_time_s=reduced["step_time_s"],
        loss=reduced["loss"],
        summary=job_summary(job, reduced, gate or {}, device, mem),
    )
