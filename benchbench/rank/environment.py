"""What this rank's process runs on, as the record's ``env`` says it (the fields are declared once,
in :data:`benchbench.protocol.provenance.FIELDS`): torch's version and settings, the devices, hosts
and threads, the Slurm ids and the checkout's commit."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from benchbench.protocol.provenance import git_commit


def device_name(device_type: str, index: int | None = None) -> str:
    """A readable device name: the GPU's, or the CPU model from /proc/cpuinfo."""
    if device_type == "cuda":
        return torch.cuda.get_device_name(index)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect(
    *,
    backend: str | None,
    device_type: str,
    device_names: list[str],
    hosts: list[str],
    ranks: int,
    threads: int,
    launcher: str,
) -> dict[str, Any]:
    """The record's ``env`` (all of :data:`~benchbench.protocol.provenance.FIELDS` but the
    launcher's ``wall_time_s``)."""
    return {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "backend": backend,
        "device": device_type,
        "device_names": device_names,
        "hosts": hosts,
        "ranks": ranks,
        "threads_per_rank": threads,
        "oversubscribed": device_type == "cpu" and ranks * threads > (os.cpu_count() or 1),
        "git_commit": git_commit(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_step_id": os.environ.get("SLURM_STEP_ID"),
        "slurm_nodelist": os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST"),
        "launcher": launcher,
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32) if device_type == "cuda" else None,
        "matmul_precision": torch.get_float32_matmul_precision(),
        "cpu_count": os.cpu_count(),
        "timed_alone": os.environ.get("BENCHBENCH_TIMED_ALONE", "1") == "1",
    }
