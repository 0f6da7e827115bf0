"""What a plan actually applied, read back from the built model — not from the preset's name.

:func:`applied_composition` lists the steps in the order :mod:`~benchbench.strategies.parallelize`
applies them, each with sizes read from the objects torch built: the pipeline schedule's class and
stage count, the tensor-parallel mesh size from DTensor placements (sequence parallel when the
LayerNorms are DTensors over ``tp``), the data-parallel wrapper (DDP and its communication hook,
FSDP2 and whether it reshards after forward, or the hand-written sync), and the optimizer. A hybrid
that collapsed (a dimension of size 1) shows up as a missing step. HSDP reads as
``hsdp(R replicas x S shards, ...)`` from the parameters' 2-D placements; checkpointed blocks as
``checkpoint(k/n blocks)``. The GPU-only steps: float8 (the count of torchao ``Float8Linear``
modules), async TP (blocks compiled, Inductor's micro-pipeline pass on, symmetric memory enabled
for the TP group) and context parallel (the trainer's sequence-sharding context and its mesh size).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from torch import nn
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from benchbench.strategies.checkpointing import checkpoint_summary
from benchbench.strategies.compiled import compiled_blocks

if TYPE_CHECKING:
    from benchbench.spec.job import Job
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
    inner = [m for m in module.modules() if isinstance(m, FSDPModule) and m is not module] or [module]
    group = inner[0]._get_fsdp_state()._fsdp_param_group
    reshard = group is not None and group.post_forward_mesh_info is not None
    params = list(module.parameters())
    replicas = next((s for p in params if (s := _mesh_size(p, "dp_replicate"))), None)
    if replicas:  # HSDP: FSDP2 over the 2-D (dp_replicate, dp_shard) mesh
        shards = next((s for p in params if (s := _mesh_size(p, "dp_shard"))), 1)
        return f"hsdp({replicas} replicas x {shards} shards, reshard={'on' if reshard else 'off'})"
    size = next((s for p in params if (s := _mesh_size(p, "dp") or _mesh_size(p, "dp_cp"))), 1)
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


def _float8(modules: list[nn.Module]) -> str | None:
    n = sum(type(m).__name__ == "Float8Linear" for mod in modules for m in mod.modules())
    return f"float8({n} Linear)" if n else None


def _async_tp(modules: list[nn.Module]) -> str | None:
    inductor_config = sys.modules.get("torch._inductor.config")  # not imported: no async TP (none on CPU)
    tp = next((p for m in modules for p in m.parameters() if _mesh_size(p, "tp")), None)
    if tp is None or inductor_config is None or not inductor_config._micro_pipeline_tp:
        return None
    from torch.distributed._symmetric_memory import is_symm_mem_enabled_for_group

    mesh = tp.device_mesh
    group = mesh.get_group(mesh.mesh_dim_names.index("tp")).group_name
    blocks = [b for m in modules for b in getattr(m, "blocks", {}).values()]
    compiled = compiled_blocks(modules)
    if not is_symm_mem_enabled_for_group(group):
        return None
    return f"async-tp(symm-mem, {compiled}/{len(blocks)} blocks compiled)"


def _context_parallel(p: Parallelized) -> str | None:
    size = getattr(p.step_context, "cp_size", None)
    return f"cp({size}, ring attention)" if size else None


def _optimizer(opt: Any) -> str:
    zero = sys.modules.get("torch.distributed.optim")  # imported by ZeRO plans only (up to 0.5 s of imports)
    if zero is not None and isinstance(opt, zero.ZeroRedundancyOptimizer):
        return f"zero1({type(opt.optim).__name__}, {opt.world_size}-way)"
    return type(opt).__name__


def applied_composition(p: Parallelized, job: Job) -> list[str]:
    """The steps applied on this rank, in order (pipeline → float8 → tp → async TP → activation
    checkpointing → compile → data parallel → context parallel → accumulation → optimizer)."""
    compiled = compiled_blocks(p.modules)
    steps = [
        _pipeline(p),
        _float8(p.modules),
        _tensor_parallel(p.modules),
        _async_tp(p.modules),
        checkpoint_summary(p.modules),
        f"compile({compiled} blocks)" if compiled else None,
        _data_parallel(p),
        _context_parallel(p),
    ]
    if job.plan.accum_steps > 1 and p.schedule is None:
        steps.append(f"accumulate({job.plan.accum_steps} micro-steps)")
    return [s for s in steps if s] + [_optimizer(p.optimizer)]
