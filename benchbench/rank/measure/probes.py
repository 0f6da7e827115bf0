"""Extra, untimed steps after the timed ones, each measuring what the timed loop cannot without
disturbing it (definitions: docs/METRICS.md):

* :func:`count_step` — one step under :class:`~benchbench.rank.measure.comm_stats.CommCounter`
  (calls, payload and bus bytes per collective kind and mesh dimension) and
  :class:`ExecutedFlops` (the FLOPs this rank executed: hardware FLOPs);
* :func:`exposed_rounds` — paired steps with and without gradient sync (:mod:`benchbench.rank.measure.exposed`),
  only where a data-parallel peer exists (``dp`` > 1);
* :func:`bubble_rounds` — the pipeline's compute timeline (:mod:`benchbench.rank.measure.bubble`).

Each returns this rank's raw figures; :mod:`benchbench.rank.loop` reduces them across ranks.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from benchbench.rank.measure.bubble import instrument
from benchbench.rank.measure.comm_stats import CommCounter
from benchbench.rank.measure.exposed import install_switch, paired_steps, timed_step
from benchbench.spec.job import Job
from benchbench.strategies.parallelize import make_mesh


def mesh_dims(job: Job, device: torch.device) -> dict[str, tuple[str, int]]:
    """Process-group name -> (mesh dimension, size), for the dimensions this plan splits (HSDP:
    also ``dp_shard``, where its all-gathers and reduce-scatters run, and ``dp_replicate``, where
    the shards' gradients are all-reduced)."""

    mesh = make_mesh(job.plan, device)
    sizes = {"dp": job.dp, "pp": job.pp, "cp": job.plan.cp, "tp": job.tp}
    if job.plan.dp_shard:
        sizes |= {"dp_replicate": job.plan.replicas, "dp_shard": job.plan.dp_shard}
    dims = {mesh[d].get_group().group_name: (d, n) for d, n in sizes.items() if n > 1}
    if job.plan.cp > 1:  # FSDP2 shards over the flattened dp x cp mesh (parallelize._wrap_fsdp)
        dims[mesh["dp", "cp"]._flatten("dp_cp").get_group().group_name] = ("dp_cp", job.dp * job.plan.cp)
    return dims


@functools.cache
def _flop_formulas() -> dict[Any, Any]:
    """torch's FLOP formulas per op (``torch.utils.flop_counter``), plus its flash-attention ones
    for the CPU kernels of ``scaled_dot_product_attention``, which its registry lacks (same
    arguments: query, key, value; backward: grad_out first). Built once per process."""
    from torch.utils.flop_counter import flop_registry

    aten = torch.ops.aten
    return {
        **flop_registry,
        aten._scaled_dot_product_flash_attention_for_cpu: flop_registry[aten._scaled_dot_product_flash_attention],
        aten._scaled_dot_product_flash_attention_for_cpu_backward: flop_registry[
            aten._scaled_dot_product_flash_attention_backward
        ],
    }


class ExecutedFlops(TorchDispatchMode):
    """FLOPs of the ops this rank executes, by torch's formulas (``torch.utils.flop_counter``:
    matmuls, convolutions, attention — counted in full, as torch does: a causal mask is not
    subtracted; 2 per multiply-add), the CPU attention kernels included. Unlike ``FlopCounterMode`` it tracks no
    modules (whose backward hooks break the zero-bubble schedules' ``autograd.grad``), and it
    counts a DTensor op on the local shards of its operands (what this rank computes), not on the
    global shapes."""

    def __init__(self) -> None:
        from torch.distributed.tensor import DTensor

        super().__init__()
        self.flops = 0
        self._formulas = _flop_formulas()
        self._local = lambda t: t._local_tensor if isinstance(t, DTensor) else t

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = self._formulas.get(func._overloadpacket)
        if formula is not None:
            local = tree_map(self._local, (args, kwargs, out))
            self.flops += formula(*local[0], **local[1], out_val=local[2])
        return out


def count_step(job: Job, trainer: Any, batch: tuple[torch.Tensor, ...], device: torch.device) -> dict[str, Any]:
    """One step counted: ``comm`` rows (this rank's) and ``flops`` (this rank's executed FLOPs).

    Compiled blocks run eagerly here (``torch.compiler.set_stance("force_eager")``): torch.compile
    refuses to run under a Python dispatch mode. So a compile plan's FLOPs are its eager ops' (the
    same matmuls: inductor fuses pointwise ops, which carry no counted FLOPs)."""
    dims = mesh_dims(job, device) if job.distributed else {}
    eager = torch.compiler.set_stance("force_eager") if job.plan.compile else contextlib.nullcontext()
    with eager, CommCounter(dims) as comm, comm.other_threads(), ExecutedFlops() as flops:
        trainer.train_step(*batch)
    return {"comm": comm.table(), "flops": float(flops.flops)}


def rounds_for(job: Job) -> int:
    """Extra steps per probe: as many as the timed steps, at least 3 (a median of three) and at
    most 5 (the probes must not dominate a job's time)."""
    return max(3, min(job.steps, 5))


def exposed_rounds(
    job: Job, trainer: Any, batch: tuple, device: torch.device
) -> tuple[list[float], list[float]] | None:
    """This rank's paired step times (with sync, without), or ``None`` when the plan has no
    switchable gradient sync (no data-parallel DDP / hand-written all-reduce) or no data-parallel
    peer (``dp`` = 1: the gradient all-reduce runs over a group of one, nothing to expose)."""
    if job.dp == 1:
        return None
    switch = install_switch(getattr(trainer, "modules", []), getattr(trainer, "grad_syncs", []))
    if not switch:
        return None
    return paired_steps(trainer, batch, switch, rounds_for(job), lambda t, b: timed_step(t, b, device))


def bubble_rounds(job: Job, trainer: Any, batch: tuple, device: torch.device) -> dict[str, Any]:
    """This rank's timed compute actions and ``schedule.step`` wall of each extra step."""
    import torch.distributed as dist

    timeline = instrument(trainer.schedule, device)
    actions, walls = [], []
    for _ in range(rounds_for(job)):
        timeline.actions = []
        dist.barrier()
        trainer.optimizer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        trainer.forward_backward_step(*batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        walls.append(time.perf_counter() - t0)
        actions.append(timeline.actions)
        trainer.optimizer.step()
    return {"actions": actions, "walls": walls}
