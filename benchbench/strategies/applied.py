"""What a plan actually applied, read back from the built model — not from the preset's name.

:func:`applied_composition` lists the steps in the order :mod:`~benchbench.strategies.parallelize`
applies them, each with sizes read from the objects torch built: the pipeline schedule's class and
stage count, the tensor-parallel mesh size from DTensor placements (sequence parallel when the
LayerNorms are DTensors over ``tp``), the data-parallel wrapper (DDP and its communication hook,
FSDP2 and whether it reshards after forward, or the hand-written sync), and the optimizer. A hybrid
that collapsed (a dimension of size 1) shows up as a missing step.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from torch import nn
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

if TYPE_CHECKING:
    from benchbench.job import Job
    from benchbench.strategies.parallelize import Parallelized


def _mesh_size(t: Any, dim: str) -> int | None:
    """Size of mesh dimension ``dim`` that a DTensor is laid out over (None if it is not)."""
    if not isinstance(t, DTensor):
        return None
    names = t.device_mesh.mesh_dim_names or ()
    return t.device_mesh.size(names.index(dim)) if dim in names else None


def _pipeline(p: Parallelized) -> str | None:
    if p.schedule is None:
        return None
    stages = getattr(p.schedule, "_stages", None) or [p.schedule._stage]
    ids = [s.stage_index for s in stages]
    return (
        f"pipeline({type(p.schedule).__name__}, stages={stages[0].num_stages}, here={ids}, "
        f"micro-batches={p.schedule._n_microbatches})"
    )


def _tensor_parallel(modules: list[nn.Module]) -> str | None:
    params = [p for m in modules for p in m.parameters()]
    size = next((s for p in params if (s := _mesh_size(p, "tp"))), None)
    if size is None:
        return None
    norms = [n.weight for m in modules for n in m.modules() if isinstance(n, nn.LayerNorm)]
    sp = any(_mesh_size(w, "tp") for w in norms)
    return f"tp({size}, sp={'on' if sp else 'off'})"


def _fsdp(module: FSDPModule) -> str:
    size = next((s for p in module.parameters() if (s := _mesh_size(p, "dp"))), 1)
    inner = [m for m in module.modules() if isinstance(m, FSDPModule) and m is not module] or [module]
    group = inner[0]._get_fsdp_state()._fsdp_param_group
    reshard = group is not None and group.post_forward_mesh_info is not None
    return f"fsdp({size}, reshard={'on' if reshard else 'off'})"


def _data_parallel(p: Parallelized) -> str | None:
    for m in p.modules:
        if isinstance(m, DistributedDataParallel):
            hook = f", hook={m._comm_hooks[0][0].__name__}" if m._comm_hooks else ""
            static = ", static_graph" if m.static_graph else ""
            return f"ddp({m.process_group.size()}, bucket={m.bucket_bytes_cap / 2**20:g}MB{hook}{static})"
        if isinstance(m, FSDPModule):
            return _fsdp(m)
    if p.grad_syncs:
        return f"naive-dp({p.grad_syncs[0].world}, all-reduce per tensor after backward)"
    return None


def _optimizer(opt: Any) -> str:
    zero = sys.modules.get("torch.distributed.optim")  # imported by ZeRO plans only (up to 0.5 s of imports)
    if zero is not None and isinstance(opt, zero.ZeroRedundancyOptimizer):
        return f"zero1({type(opt.optim).__name__}, {opt.world_size}-way)"
    return type(opt).__name__


def applied_composition(p: Parallelized, job: Job) -> list[str]:
    """The steps applied on this rank, in order (pipeline → tp → data parallel → accumulation → optimizer)."""
    steps = [_pipeline(p), _tensor_parallel(p.modules), _data_parallel(p)]
    if job.plan.accum_steps > 1 and p.schedule is None:
        steps.append(f"accumulate({job.plan.accum_steps} micro-steps)")
    return [s for s in steps if s] + [_optimizer(p.optimizer)]
