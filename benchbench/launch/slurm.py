"""Slurm: what a bench job asks of the scheduler (how a rank started by ``srun`` finds the others is
the rank's side: :func:`benchbench.rank.rendezvous.rank_env_from_slurm`).

* :func:`job_resources` — the Snakemake resources of one bench job for
  snakemake-executor-plugin-slurm: nodes, tasks (one per rank), tasks per node, cpus per task,
  GPUs per node, memory, runtime, ``mpi="srun"`` for multi-rank jobs, and ``--exclusive``
  (whole nodes: nothing else runs beside a timed job) unless the study says ``slurm_exclusive:
  false``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchbench.spec.job import Job

SLURM_EXECUTORS = ("slurm", "slurm-jobstep")  # the submitting side and the job's own Snakemake
DEFAULT_MEM_MB_PER_CPU = 2000  # when the hardware profile's slurm section gives none


def job_resources(job: Job, exclusive: bool = True) -> dict[str, Any]:
    """Snakemake resources of a bench job under snakemake-executor-plugin-slurm.

    One task per rank; on GPUs one rank per GPU, ``devices_per_node`` ranks per node. The plugin
    turns ``gpu``/``tasks`` into ``--ntasks-per-gpu=<tasks>`` (its issues #316, #459), which
    clashes with multi-GPU ranks: ``tasks_per_gpu=0`` suppresses it, and GPUs are requested per
    node with ``gres``. Multi-task jobs set ``mpi="srun"`` and give ``tasks_per_node`` (the plugin
    takes one of tasks / tasks_per_node), so sbatch gets ``--nodes --ntasks-per-node``; with one
    rank per node they give ``tasks`` (the plugin refuses ``tasks_per_node=1`` for mpi jobs):
    ``--nodes=<ws> --ntasks=<ws>``. Keys a job
    does not need are 0 or "" (Snakemake resources cannot be absent for some jobs only; the plugin
    treats both as unset). Partition and account are left to the user's default resources.
    ``exclusive`` (the study's ``slurm_exclusive``) adds ``--exclusive`` through ``slurm_extra``,
    the plugin's field for sbatch flags it has no resource for.
    """
    hw = job.hardware_cfg
    slurm = hw.slurm
    ws = job.world_size
    per_node = max(1, min(ws, hw.devices_per_node))
    nodes = math.ceil(ws / per_node)
    res: dict[str, Any] = {
        "nodes": nodes,
        "cpus_per_task": int(slurm.get("cpus_per_task", job.threads_per_rank)),
        "mem_mb_per_cpu": int(slurm.get("mem_mb_per_cpu", DEFAULT_MEM_MB_PER_CPU)),
        "runtime": int(slurm.get("runtime_min", math.ceil(job.timeout_s / 60) + 5)),
        "mpi": "srun" if ws > 1 else "",
    }
    # with mpi the plugin takes tasks_per_node or tasks, not both, and refuses tasks_per_node=1:
    # one rank per node is --nodes=<ws> --ntasks=<ws> (found on the two-node local cluster)
    res["tasks_per_node"] = per_node if ws > 1 and per_node > 1 else 0
    res["tasks"] = ws if per_node == 1 else 0
    res["gres"] = f"gpu:{per_node}" if hw.device == "cuda" else ""
    res["tasks_per_gpu"] = 0
    res["slurm_extra"] = "--exclusive" if exclusive else ""
    return res


def timed_alone(bench_slots: int | None, executor: str | None, exclusive: bool) -> bool:
    """Whether no other timed job may run beside a bench job (the record's ``timed_alone``).

    Under the Slurm executor a job is alone when it holds whole nodes (``exclusive``, the study's
    ``slurm_exclusive``); its own Snakemake inside the allocation (``slurm-jobstep``) decides the
    same way. Elsewhere (local executor, also inside one allocation) one ``bench_slots`` does.
    """
    if executor in SLURM_EXECUTORS:
        return exclusive
    return bench_slots == 1
