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
from benchbench.models import build_model, model_info
from benchbench.record import make_record
from benchbench.strategies import Plan, parallelize

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
    step_times: list[float], job: dict[str, Any], peak_mem: tuple[float, str], comm: tuple[int, str]
) -> dict[str, Any]:
    """The record's summary from the timed steps (definitions: docs/METRICS.md)."""
    info = model_info(job["model_cfg"])
    t = np.asarray(step_times, dtype=float)
    median = float(np.median(t))
    samples_per_s = job["global_batch"] / median
    achieved = info.train_flops_per_sample * samples_per_s  # model FLOP/s of the whole job
    peak = (job.get("hardware_cfg", {}).get("peak_flops") or {}).get(job["dtype"])
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
        "comm_bytes_per_step": comm[0],
        "comm_bytes_source": comm[1],
        "params": info.params,
        "train_flops_per_sample": info.train_flops_per_sample,
    }


def run_rank(job: dict[str, Any], env: RankEnv) -> dict[str, Any] | None:
    """Run ``job`` as rank ``env.rank``; returns the ok record on rank 0, ``None`` elsewhere.

    The process group, if the plan needs one, must already be initialised."""
    plan = Plan(**job["plan"])
    threads = int(job.get("threads_per_rank", 1))
    torch.set_num_threads(threads)
    hw = job.get("hardware_cfg", {"device": "cpu", "backend": "gloo"})
    device = torch.device(f"cuda:{env.local_rank}") if hw["device"] == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    distributed = dist.is_available() and dist.is_initialized()

    torch.manual_seed(job["seed"])  # identical initial weights on every rank and strategy
    model = build_model(job["model_cfg"])
    task = make_task(job["model_cfg"], job["seed"])
    trainer = parallelize(model, plan, device, task.loss_fn, job.get("optimizer", {}), DTYPES[job["dtype"]])

    dp_rank = env.rank // (plan.tp * plan.pp)
    total = job["warmup_steps"] + job["steps"]
    batches = []
    for s in range(total):  # generated before the clock starts
        x, y = task.batch(s, job["global_batch"])
        batches.append((shard(x, dp_rank, plan.dp).to(device), shard(y, dp_rank, plan.dp).to(device)))

    losses: list[torch.Tensor] = []
    times: list[float] = []
    for x, y in batches:
        if distributed:
            dist.barrier()
        _sync(device)
        t0 = time.perf_counter()
        loss = trainer.train_step(x, y)
        _sync(device)
        times.append(time.perf_counter() - t0)
        losses.append(loss)

    # Reductions after the loop: slowest rank per step; global loss = mean over dp shards.
    step_t = torch.tensor(times[job["warmup_steps"] :], dtype=torch.float64)
    loss_t = torch.stack([v.double().cpu() for v in losses])
    mem, mem_source = peak_memory_mb(device)
    mem_t = torch.tensor([mem], dtype=torch.float64)
    hosts = [socket.gethostname()]
    names = [device_name(device)]
    if distributed:
        comm_device = device if hw.get("backend") == "nccl" else torch.device("cpu")
        step_t, loss_t, mem_t = step_t.to(comm_device), loss_t.to(comm_device), mem_t.to(comm_device)
        dist.all_reduce(step_t, op=dist.ReduceOp.MAX)
        dist.all_reduce(loss_t, op=dist.ReduceOp.SUM)
        loss_t /= env.world_size
        dist.all_reduce(mem_t, op=dist.ReduceOp.MAX)
        gathered: list[Any] = [None] * env.world_size
        dist.all_gather_object(gathered, (hosts[0], names[0]))
        hosts = sorted({h for h, _ in gathered})
        names = sorted({n for _, n in gathered})
    comm = (trainer.comm_bytes(), trainer.comm_bytes_source)
    # Free DDP/FSDP state (reference cycles) now, while its process group still exists:
    # collected at interpreter exit, after the group is destroyed, gloo aborts the process.
    del trainer, model
    gc.collect()
    if env.rank != 0:
        return None

    step_times = step_t.cpu().tolist()
    provenance = {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "backend": hw.get("backend") if distributed else None,
        "device": device.type,
        "device_names": names,
        "hosts": hosts,
        "ranks": env.world_size,
        "threads_per_rank": threads,
        "git_commit": git_commit(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "launcher": env.launcher,
        "cpu_count": os.cpu_count(),
    }
    summary = summarize(step_times, job, (float(mem_t.item()), mem_source), comm)
    return make_record(job, "ok", None, provenance, step_times, loss_t.cpu().tolist(), summary)
