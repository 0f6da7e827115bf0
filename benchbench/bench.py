"""The timed training loop that every rank runs, and the summary of its measurements.

Per step: all ranks meet at a barrier, each times its own ``train_step`` (device-synchronised on
GPU), and the step's time is the slowest rank's (a MAX all-reduce after the loop, so the
reduction itself is not timed). Warm-up steps are run and their loss kept, but not timed.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from benchbench.config import ROOT
from benchbench.data import make_task, shard
from benchbench.launch import RankEnv
from benchbench.models import model_info
from benchbench.record import make_record
from benchbench.strategies import Plan, parallelize, theoretical_bubble
from benchbench.strategies.comm_stats import CommCounter

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """This process's peak memory: the CUDA allocator's peak on GPU, peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_allocator"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss"  # Linux: KiB


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def summarize(
    step_times: list[float],
    job: dict[str, Any],
    peak_mem: tuple[float, str],
    comm_bytes: float | None,
    blocked_fraction: float | None,
) -> dict[str, Any]:
    """The record's summary from the timed steps (definitions: docs/METRICS.md)."""
    info = model_info(job["model_cfg"])
    plan = Plan.from_dict(job["plan"])
    t = np.asarray(step_times, dtype=float)
    median = float(np.median(t))
    samples_per_s = job["global_batch"] / median
    achieved = info.train_flops_per_sample * samples_per_s  # model FLOP/s of the whole job
    peak = (job.get("hardware_cfg", {}).get("peak_flops") or {}).get(job["dtype"])
    pipelined = plan.pp > 1
    return {
        "step_time_median_s": median,
        "step_time_p10_s": float(np.percentile(t, 10)),
        "step_time_p90_s": float(np.percentile(t, 90)),
        "step_time_cv": float(t.std(ddof=1) / t.mean()) if len(t) > 1 else 0.0,
        "samples_per_s": samples_per_s,
        "tokens_per_s": samples_per_s * info.tokens_per_sample if info.tokens_per_sample else None,
        "model_tflops_per_rank": achieved / job["world_size"] / 1e12,
        "mfu": achieved / (job["world_size"] * peak) if peak else None,
        "peak_mem_mb": peak_mem[0],
        "peak_mem_source": peak_mem[1],
        "comm_bytes_per_step": comm_bytes,
        "comm_bytes_source": "measured" if comm_bytes is not None else "none",
        "exposed_comm_fraction": None if pipelined or plan.single_process else blocked_fraction,
        "bubble_fraction_measured": blocked_fraction if pipelined else None,
        "bubble_fraction_theoretical": theoretical_bubble(plan),
        "params": info.params,
        "train_flops_per_sample": info.train_flops_per_sample,
    }


def _count_comm(trainer: Any, x: torch.Tensor, y: torch.Tensor) -> float:
    """Bytes this rank hands to collectives in one extra, untimed step."""
    with CommCounter() as counter:
        trainer.train_step(x, y)
    return float(counter.bytes)


def run_rank(job: dict[str, Any], env: RankEnv) -> dict[str, Any] | None:
    """Run ``job`` as rank ``env.rank``; returns the ok record on rank 0, ``None`` elsewhere.

    The process group, if the plan needs one, must already be initialised."""
    plan = Plan.from_dict(job["plan"])
    threads = int(job.get("threads_per_rank", 1))
    torch.set_num_threads(threads)
    hw = job.get("hardware_cfg", {"device": "cpu", "backend": "gloo"})
    device = torch.device(f"cuda:{env.local_rank}") if hw["device"] == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    distributed = dist.is_available() and dist.is_initialized()

    task = make_task(job["model_cfg"], job["seed"])
    trainer = parallelize(job, device, task.loss_fn, DTYPES[job["dtype"]])

    dp_rank = env.rank // (plan.tp * plan.pp)  # mesh (dp, pp, tp), tp innermost
    total = job["warmup_steps"] + job["steps"]
    batches = []
    for s in range(total):  # generated before the clock starts
        x, y = task.batch(s, job["global_batch"])
        batches.append((shard(x, dp_rank, plan.dp).to(device), shard(y, dp_rank, plan.dp).to(device)))

    losses: list[torch.Tensor] = []
    has_loss: list[float] = []
    times: list[float] = []
    blocked: list[float] = []
    for x, y in batches:
        if distributed:
            dist.barrier()
        _sync(device)
        c0, t0 = time.thread_time(), time.perf_counter()
        loss = trainer.train_step(x, y)
        _sync(device)
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        times.append(wall)
        blocked.append(max(0.0, 1.0 - cpu / wall) if wall > 0 else 0.0)
        losses.append(loss.detach().double().cpu() if loss is not None else torch.zeros((), dtype=torch.float64))
        has_loss.append(1.0 if loss is not None else 0.0)
    comm_bytes = _count_comm(trainer, *batches[0]) if distributed else None

    # Reductions after the loop: slowest rank per step; global loss = mean over the ranks that
    # hold one (all data-parallel shards; the last pipeline stage); means of the blocked share.
    w = job["warmup_steps"]
    step_t = torch.tensor(times[w:], dtype=torch.float64)
    loss_t = torch.stack([torch.stack(losses), torch.tensor(has_loss, dtype=torch.float64)])
    mem, mem_source = peak_memory_mb(device)
    stats = torch.tensor([mem, comm_bytes or 0.0], dtype=torch.float64)
    blocked_t = torch.tensor(blocked[w:], dtype=torch.float64)
    hosts = [socket.gethostname()]
    names = [device_name(device)]
    if distributed:
        # NCCL reduces device tensors only; gloo host tensors
        red = device if dist.get_backend() == "nccl" else torch.device("cpu")
        step_t, loss_t, stats, blocked_t = (t.to(red) for t in (step_t, loss_t, stats, blocked_t))
        dist.all_reduce(step_t, op=dist.ReduceOp.MAX)
        dist.all_reduce(loss_t, op=dist.ReduceOp.SUM)
        dist.all_reduce(stats, op=dist.ReduceOp.MAX)
        dist.all_reduce(blocked_t, op=dist.ReduceOp.SUM)
        blocked_t /= env.world_size
        step_t, loss_t, stats, blocked_t = (t.cpu() for t in (step_t, loss_t, stats, blocked_t))
        gathered: list[Any] = [None] * env.world_size
        dist.all_gather_object(gathered, (hosts[0], names[0]))
        hosts = sorted({h for h, _ in gathered})
        names = sorted({n for _, n in gathered})
    # Free DDP/FSDP state (reference cycles) now, while its process group still exists:
    # collected at interpreter exit, after the group is destroyed, gloo aborts the process.
    del trainer
    gc.collect()
    if env.rank != 0:
        return None

    step_times = step_t.tolist()
    global_loss = (loss_t[0] / loss_t[1]).tolist()
    provenance = {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "backend": hw.get("backend") if distributed else None,
        "device": device.type,
        "device_names": names,
        "hosts": hosts,
        "ranks": env.world_size,
        "threads_per_rank": threads,
        "oversubscribed": device.type == "cpu" and env.world_size * threads > (os.cpu_count() or 1),
        "git_commit": git_commit(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_step_id": os.environ.get("SLURM_STEP_ID"),
        "slurm_nodelist": os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST"),
        "launcher": env.launcher,
        "cpu_count": os.cpu_count(),
    }
    blocked_fraction = float(np.median(blocked_t.numpy())) if device.type == "cpu" else None
    comm = float(stats[1].item()) if distributed else None
    summary = summarize(step_times, job, (float(stats[0].item()), mem_source), comm, blocked_fraction)
    return make_record(job, "ok", None, provenance, step_times, global_loss, summary)
