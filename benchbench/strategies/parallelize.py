"""The one place that applies a :class:`~benchbench.spec.plan.Plan` to a model, after
torchtitan's ``parallelize_llama``: small steps in a fixed order over the named device mesh
``(dp, pp, cp, tp)`` (tp innermost; cp = 1 but for context-parallel plans).

1. pipeline split — this rank's stages, each pruned from the model built on the ``meta`` device
   (:mod:`~benchbench.strategies.pipeline_parallel`); one whole model when pp = 1;
2. tensor (and sequence) parallel over ``tp`` (:mod:`~benchbench.strategies.tensor_parallel`),
   still on ``meta``;
2b. activation checkpointing of the blocks the plan names (:mod:`~benchbench.strategies.checkpointing`),
   after TP and before the data-parallel wrapper, as torchtitan orders it (TP, AC, compile, FSDP);
   then (2c) ``torch.compile`` of each transformer block when ``plan.compile``
   (:func:`~benchbench.strategies.compiled.apply_compile`): after tensor parallel, async TP and
   activation checkpointing, before the data-parallel wrapper, as torchtitan's ``apply_compile``
   (compiled lazily, in the first warm-up step; async TP plans always compile: Inductor's
   micro-pipeline pass is what overlaps their collectives);
3. data parallel over ``dp``, outermost, as the flavour's row of :data:`DATA_PARALLEL` says
   (wrapper, ``no_sync``, post-backward hook); skipped when dp = 1 under tp or pp. The weights are
   materialised (:func:`~benchbench.models.weights.materialize`: allocated on the device, each parameter
   seeded by its name) before a replicating wrapper (DDP, which broadcasts them) and after a
   sharding one (FSDP2), so no rank of a sharding plan ever holds the unsharded model. HSDP
   (``dp_shard`` = k) is FSDP2 over the 2-D mesh ``(dp_replicate, dp_shard)`` that
   :func:`make_mesh` splits ``dp`` into: sharded within groups of k ranks, replicated across them;
4. the optimizer (the flavour's: AdamW, or AdamW sharded for ZeRO-1) and, for pipelines, the
   schedule over this rank's stages.

The GPU-only steps (:mod:`~benchbench.spec.gpu_features` says where they cannot run) slot
in as torchtitan orders them: float8 (:mod:`~benchbench.strategies.float8`) converts the Linears
right after step 1, before any wrapping; async TP (:mod:`~benchbench.strategies.async_tp`) right
after step 2; context parallel (:mod:`~benchbench.strategies.context_parallel`) shards data
parallel over the flattened ``dp x cp`` mesh in step 3 and, after materialising, returns the
per-micro-step context the trainer runs forward and backward in.

The result, :class:`Parallelized`, is what :mod:`benchbench.rank.loop` builds a trainer from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from benchbench.models.build import build_model
from benchbench.models.tasks import LossFn
from benchbench.models.weights import materialize
from benchbench.spec.job import Job
from benchbench.spec.plan import Plan
from benchbench.spec.schedules import stage_ids
from benchbench.strategies.async_tp import apply_async_tp
from benchbench.strategies.checkpointing import apply_ac
from benchbench.strategies.compiled import apply_compile
from benchbench.strategies.compression import register_compression
from benchbench.strategies.context_parallel import StepContext, apply_cp
from benchbench.strategies.data_parallel import NaiveGradSync, apply_ddp
from benchbench.strategies.float8 import apply_float8
from benchbench.strategies.pipeline_parallel import build_stage_module, make_schedule, make_stage
from benchbench.strategies.sharded import apply_fsdp, fsdp_no_sync, zero1_optimizer
from benchbench.strategies.tensor_parallel import apply_tp

NoSync = Callable[[], contextlib.AbstractContextManager]


#: The optimizers a trainer can be built with: AdamW (training, no weight decay) and plain SGD (no
#: momentum, no weight decay: the correctness gate's scale-sensitive step, :mod:`benchbench.rank.gate`).
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "adamw": (torch.optim.AdamW, {"weight_decay": 0.0}),
    "sgd": (torch.optim.SGD, {}),
}


def replicated(params: list[nn.Parameter], group: dist.ProcessGroup | None, lr: float, name: str):
    """The optimizer ``name`` over all of this rank's parameters (state not sharded)."""
    del group  # replicated state: every rank updates all of its parameters
    cls, kwargs = OPTIMIZERS[name]
    return cls(params, lr=lr, **kwargs)


def zero1(params: list[nn.Parameter], group: dist.ProcessGroup | None, lr: float, name: str):
    """The optimizer ``name`` with its state sharded over ``group`` (ZeRO stage 1)."""
    cls, kwargs = OPTIMIZERS[name]
    return zero1_optimizer(params, group, lr, cls, kwargs)


def _wrap_none(module: nn.Module, plan: Plan, mesh: Any, device: torch.device, dtype: str) -> nn.Module:
    return module


def _wrap_ddp(module: nn.Module, plan: Plan, mesh: Any, device: torch.device, dtype: str) -> nn.Module:
    group = mesh["dp"].get_group()
    ddp = apply_ddp(module, device, group, plan.bucket_cap_mb, plan.static_graph)
    register_compression(ddp, plan.compression, group, plan.powersgd_rank, plan.powersgd_warmup)
    return ddp


def _wrap_fsdp(module: nn.Module, plan: Plan, mesh: Any, device: torch.device, dtype: str) -> nn.Module:
    if plan.dp_shard:  # HSDP: 2-D, replicate x shard
        dp_mesh = mesh["dp_replicate", "dp_shard"]
    else:  # cp ranks share parameters: FSDP2 shards over dp x cp
        dp_mesh = mesh["dp"] if plan.cp == 1 else mesh["dp", "cp"]._flatten("dp_cp")
    return apply_fsdp(module, dp_mesh, plan.fsdp_reshards_after_forward, torch.bfloat16 if dtype == "bf16" else None)


@dataclass(frozen=True)
class DataParallel:
    """How one data-parallel flavour is applied (names and meanings: ``plan.DP_FLAVOURS``)."""

    wrap: Callable[[nn.Module, Plan, Any, torch.device, str], nn.Module]  # (module, plan, mesh, device, dtype)
    shards_parameters: bool  # the wrapper shards parameters: wrap on ``meta``, then materialise the shards
    no_sync: Callable[[nn.Module], contextlib.AbstractContextManager] | None  # skip gradient sync
    after_backward: Callable[[nn.Module, dist.ProcessGroup], Callable[[], None]] | None
    optimizer: Callable[[list[nn.Parameter], dist.ProcessGroup | None, float, str], torch.optim.Optimizer]


DATA_PARALLEL: dict[str, DataParallel] = {
    "none": DataParallel(_wrap_none, False, None, None, replicated),
    "naive": DataParallel(_wrap_none, False, None, NaiveGradSync, replicated),
    "ddp": DataParallel(_wrap_ddp, False, lambda m: m.no_sync(), None, replicated),
    "zero1": DataParallel(_wrap_ddp, False, lambda m: m.no_sync(), None, zero1),
    "fsdp": DataParallel(_wrap_fsdp, True, fsdp_no_sync, None, replicated),
}


@dataclass
class Parallelized:
    """This rank's share of the model with its plan applied."""

    modules: list[nn.Module]  # the model (pp = 1) or this rank's pipeline stages
    optimizer: torch.optim.Optimizer
    no_sync: NoSync  # gradient synchronisation off inside (accumulation micro-steps)
    after_backward: Callable[[], None] | None  # run once after the last backward of a step
    schedule: Any | None = None  # the pipeline schedule over this rank's stages
    has_first_stage: bool = True
    has_last_stage: bool = True
    grad_syncs: list[Any] = field(default_factory=list)  # hand-written syncs (NaiveGradSync), if any
    step_context: StepContext | None = None  # context parallel: forward and backward of a micro-step run in it


@contextlib.contextmanager
def _all(contexts: list[contextlib.AbstractContextManager]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for c in contexts:
            stack.enter_context(c)
        yield


_MESHES: dict[tuple, Any] = {}


@dataclass(frozen=True)
class HsdpMesh:
    """HSDP's mesh: the root ``(dp_replicate, dp_shard, pp, tp)`` mesh, with ``"dp"`` its
    flattened ``(dp_replicate, dp_shard)`` (kept here: torch deprecates slicing a flattened dim
    from the root)."""

    root: Any
    dp: Any

    def __getitem__(self, key: str | tuple[str, ...]) -> Any:
        return self.dp if key == "dp" else self.root[key]


def make_mesh(plan: Plan, device: torch.device) -> Any:
    """The named ``(dp, pp, cp, tp)`` device mesh over all ranks (tp innermost, cp next to it as in
    torchtitan; cp = 1 but for context-parallel plans); made once per process, so the gate's plan
    and the timed one share its process groups (and NCCL communicators). HSDP (``dp_shard`` = k):
    ``(dp_replicate, dp_shard, pp, cp, tp)`` with dp_replicate = dp / k, and ``dp`` their flattened
    product (torchtitan's layout): the same ranks in the same order, so ``mesh["dp"]`` means what it
    means without HSDP."""
    from torch.distributed.device_mesh import init_device_mesh

    key = (device.type, plan.dp, plan.pp, plan.cp, plan.tp, plan.dp_shard)
    if key not in _MESHES:
        if plan.dp_shard:
            shape = (plan.replicas, plan.dp_shard, plan.pp, plan.cp, plan.tp)
            names = ("dp_replicate", "dp_shard", "pp", "cp", "tp")
            root = init_device_mesh(device.type, shape, mesh_dim_names=names)
            mesh = HsdpMesh(root, root["dp_replicate", "dp_shard"]._flatten("dp"))
        else:
            mesh = init_device_mesh(device.type, key[1:5], mesh_dim_names=("dp", "pp", "cp", "tp"))
        _MESHES[key] = mesh
    return _MESHES[key]


def seeded_model(job: Job, device: torch.device) -> nn.Module:
    """The whole model with the job's initial weights (:func:`~benchbench.models.weights.init_weights`:
    each parameter seeded by (seed, name), generated on the CPU: identical on any device, rank
    and plan)."""
    return materialize(build_model(job.model_cfg), device, job.seed)


def apply_pipeline_split(job: Job, mesh: Any) -> tuple[list[nn.Module], list[int]]:
    """Step 1: this rank's stage modules and their stage indices (the whole model when pp = 1),
    on the ``meta`` device: nothing is allocated yet."""
    plan = job.plan
    if plan.pp == 1:
        return [build_model(job.model_cfg)], [0]
    ids = stage_ids(plan.schedule, mesh["pp"].get_local_rank(), plan.pp, plan.virtual_stages)
    n_stages = plan.pp * plan.virtual_stages
    return [build_stage_module(job.model_cfg, s, n_stages) for s in ids], ids


def apply_model_steps(module: nn.Module, plan: Plan, mesh: Any) -> nn.Module:
    """Steps 1b-2c on one (``meta``) stage module: float8 Linears (torchao), tensor (and sequence)
    parallel over ``tp``, async TP, activation checkpointing, torch.compile per block (always under
    async TP: Inductor's pass is what makes it asynchronous)."""
    if plan.float8:
        module = apply_float8(module)  # 1b
    if plan.tp > 1:
        module = apply_tp(module, mesh["tp"], plan.sequence_parallel)  # 2
    if plan.async_tp:
        module = apply_async_tp(module, mesh["tp"])  # 2a
    module = apply_ac(module, plan.activation_checkpoint, plan.ac_every)  # 2b
    return apply_compile(module, plan.compile or plan.async_tp)  # 2c: async TP needs the blocks compiled


def parallelize(
    job: Job, device: torch.device, loss_fn: LossFn, optimizer: str = "adamw", lr: float | None = None
) -> Parallelized:
    """Apply the job's plan in the documented order and return this rank's share, with the
    optimizer ``optimizer`` (:data:`OPTIMIZERS`) at ``lr`` (default: the job's)."""
    plan = job.plan
    lr = job.lr if lr is None else lr
    if not job.distributed:  # the model steps a single process can run (float8, AC, compile), then weights
        model = materialize(apply_model_steps(build_model(job.model_cfg), plan, None), device, job.seed)
        opt = replicated(list(model.parameters()), None, lr, optimizer)
        return Parallelized([model], opt, contextlib.nullcontext, None)

    mesh = make_mesh(plan, device)
    wrap_dp = plan.dp > 1 or plan.cp > 1 or (plan.tp == 1 and plan.pp == 1)
    flavour = DATA_PARALLEL[plan.dp_flavour if wrap_dp else "none"]
    dp_group = mesh["dp"].get_group()

    modules, ids = apply_pipeline_split(job, mesh)  # 1 (meta)
    modules = [apply_model_steps(m, plan, mesh) for m in modules]  # 1b, 2, 2b, 2c (meta)
    if not flavour.shards_parameters:  # replicated weights: materialise, then wrap (DDP broadcasts)
        modules = [materialize(m, device, job.seed) for m in modules]
    modules = [flavour.wrap(m, plan, mesh, device, job.dtype) for m in modules]  # 3
    if flavour.shards_parameters:  # FSDP2 sharded the meta parameters: allocate only the shards
        modules = [materialize(m, device, job.seed) for m in modules]
    no_sync: NoSync = contextlib.nullcontext
    if flavour.no_sync is not None:
        no_sync = lambda: _all([flavour.no_sync(m) for m in modules])  # noqa: E731
    syncs = [flavour.after_backward(m, dp_group) for m in modules] if flavour.after_backward else []
    after_backward = (lambda: [s() for s in syncs]) if syncs else None
    step_context = apply_cp(modules[0], mesh["cp"], int(job.model_cfg["seq_len"]), device) if plan.cp > 1 else None
    opt = flavour.optimizer([p for m in modules for p in m.parameters()], dp_group, lr, optimizer)  # 4
    if plan.pp == 1:
        return Parallelized(modules, opt, no_sync, after_backward, grad_syncs=syncs, step_context=step_context)

    n_stages = plan.pp * plan.virtual_stages
    pp_group = mesh["pp"].get_group()
    stages = [make_stage(m, s, n_stages, device, pp_group) for m, s in zip(modules, ids, strict=True)]
    schedule = make_schedule(plan.schedule, stages, plan.micro_batches, loss_fn)
    return Parallelized(modules, opt, no_sync, after_backward, schedule, 0 in ids, n_stages - 1 in ids, syncs)
