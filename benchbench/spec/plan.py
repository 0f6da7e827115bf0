"""A strategy is a named preset of a :class:`Plan`; new combinations are config, not code.

A plan fixes the mesh dimensions (``tp``, ``pp``; ``dp`` is what the world size leaves; ``"all"``
means every rank the other dimensions leave), the data-parallel flavour, compression, pipeline
schedule, micro-batches, virtual stages, accumulation and bucket size. :func:`resolve_plan` turns
a strategy name (a preset, or a study-defined strategy based on one) plus the world size into a
concrete plan; :func:`infeasible_reason` states why a plan cannot run a model at a world size and
batch, or returns ``None``; :func:`lossy_kinds` says whether a plan changes the arithmetic, and
:data:`LOSSY_BOUNDS` by how much the correctness gate lets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from benchbench.models.rules import arch_rules
from benchbench.spec.schedules import SCHEDULES

#: The data-parallel flavours a plan can name; how each is applied (wrapper, ``no_sync``,
#: optimizer) is the table ``DATA_PARALLEL`` in :mod:`benchbench.strategies.parallelize`.
DP_FLAVOURS = {
    "none": "one process, no process group",
    "naive": "hand-written all-reduce of every gradient after backward",
    "ddp": "DistributedDataParallel: bucketed all-reduce overlapped with backward",
    "zero1": "DDP + ZeroRedundancyOptimizer (optimizer state sharded)",
    "fsdp": "FSDP2 fully_shard (parameters, gradients and optimizer state sharded)",
}
#: DDP communication hooks (:mod:`benchbench.strategies.compression`).
COMPRESSIONS = ("none", "fp16", "bf16", "powersgd")
#: Activation checkpointing per transformer block (:mod:`benchbench.strategies.checkpointing`):
#: none; every block ("full"); every ``ac_every``-th block ("selective", torchtitan's layer-SAC).
ACTIVATION_CHECKPOINTS = ("none", "full", "selective")


@dataclass(frozen=True)
class Tolerance:
    """Largest relative error the correctness gate lets a plan show, and how the number was chosen."""

    rel: float
    basis: str


#: Lossy plans (gradient compression, float8 matmuls) are judged by the gate (:mod:`benchbench.rank.gate`)
#: against their own bound, the larger of two; the keys are what :func:`lossy_kinds` names. Here,
#: torch-free, so that the parent side (``benchbench recommend``, the report) can quote them.
LOSSY_BOUNDS: dict[str, Tolerance] = {
    "fp16": Tolerance(1e-2, "fp16 buckets: 11 mantissa bits; measured 2.8e-4 on CPU; x35"),
    "bf16": Tolerance(5e-2, "bf16 buckets: 8 mantissa bits; measured 2.3e-3 on CPU; x20"),
    "powersgd": Tolerance(
        2.0,
        "rank-r PowerSGD projects each gradient matrix on a rank-r subspace (error"
        " feedback makes up for it over later steps): one compressed step measured 0.58 on"
        " gpt-small and 0.62-1.26 on the tests' tiny gpt (seeds 0-2), rank 1; a projection's"
        " error is at most the gradient's norm, but the gate compares 4-projection sketches,"
        " whose ratio scatters around the true one: a gross-error guard, x1.6 the largest",
    ),
    "float8": Tolerance(
        0.25,
        "float8 matmuls (torchao rowwise, e4m3: 3 mantissa bits, 2^-4 = 6.25e-2 per"
        " element): x4, a gross-error guard; not yet measured (no GPU in the session that"
        " set it: scripts/gpu-check.sh records it)",
    ),
}


@dataclass(frozen=True)
class Plan:
    """How one job spreads the model over its ranks."""

    dp_flavour: str = "ddp"
    tp: int = 1
    pp: int = 1
    dp: int = 1  # derived: world_size // (tp * pp)
    single_process: bool = False  # the plan runs in one process, without a process group
    bucket_cap_mb: float = 25.0  # DDP gradient bucket size (torch's default)
    static_graph: bool = False  # DDP static_graph
    accum_steps: int = 1  # gradient accumulation: micro-steps per optimizer step (no_sync)
    compression: str = "none"  # DDP communication hook
    powersgd_rank: int = 1
    powersgd_warmup: int = 2  # steps of plain all-reduce before PowerSGD starts (start_powerSGD_iter)
    reshard_after_forward: bool = True  # FSDP: True ~ ZeRO-3, False ~ ZeRO-2 (under pp: fsdp_reshards_after_forward)
    sequence_parallel: bool = False  # TP: shard LayerNorm/residual activations along the sequence
    schedule: str = "1f1b"
    micro_batches: int = 1  # pipeline micro-batches per optimizer step
    virtual_stages: int = 1  # pipeline stages per rank (interleaved / looped / ZB schedules)
    compile: bool = False  # torch.compile each transformer block (strategies/compiled.py)
    # GPU-only steps (issue 13; why a device cannot run them: benchbench.spec.gpu_features)
    cp: int = 1  # context-parallel ranks: each holds 1/cp of every sequence (ring attention)
    async_tp: bool = False  # TP collectives overlapped with the matmuls (symmetric memory, compiled blocks)
    float8: bool = False  # Linear matmuls in float8 (torchao, dynamic tensorwise scaling): lossy
    # Dimensions the strategy exists to split (derived by resolve_plan): each must get >= 2 ranks,
    # or the plan is infeasible, so no strategy runs collapsed under its name.
    split_dims: tuple[str, ...] = ()
    # HSDP and activation checkpointing (issue 13)
    dp_shard: int = 0  # FSDP shard group size: 0 = all dp ranks (FSDP); k >= 2: HSDP, dp/k replicas x k shards
    activation_checkpoint: str = "none"  # none | full | selective (ACTIVATION_CHECKPOINTS)
    ac_every: int = 2  # selective: checkpoint every ac_every-th block (blocks ac_every-1, 2*ac_every-1, ...)

    @property
    def fsdp_reshards_after_forward(self) -> bool:
        """Whether FSDP2 frees a unit's gathered parameters after its forward, as parallelize
        applies it: ``reshard_after_forward``, except under a pipeline, where the parameters stay
        gathered across the micro-batches — torchtitan's default policy ("for PP, by default do
        not reshard after forward to avoid per-microbatch all-gathers", pytorch/torchtitan
        ``torchtitan/distributed/fsdp.py``, ``get_fsdp_reshard_after_forward_policy``): one
        all-gather per unit and step instead of m + 1."""
        return self.reshard_after_forward and self.pp == 1

    @property
    def shard_size(self) -> int:
        """Ranks a sharded (FSDP) parameter is split over: dp_shard under HSDP, else dp."""
        return self.dp_shard or self.dp

    @property
    def replicas(self) -> int:
        """HSDP replica groups (dp / dp_shard); 1 without HSDP."""
        return self.dp // self.dp_shard if self.dp_shard else 1

    @property
    def lossy(self) -> bool:
        """Whether the plan changes the arithmetic (:func:`lossy_kinds`)."""
        return bool(lossy_kinds(self))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "split_dims": list(self.split_dims), "lossy": self.lossy}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        """Inverse of :meth:`to_dict` (``lossy`` is derived and ignored); unknown keys raise
        ``ValueError`` naming them, so a typo never runs as the default plan."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names - {"lossy"})
        if unknown:
            raise ValueError(f"unknown plan keys {unknown}; allowed: {sorted(names)}")
        kept = {k: v for k, v in d.items() if k in names}
        kept["split_dims"] = tuple(kept.get("split_dims", ()))
        return cls(**kept)


def lossy_kinds(plan: Plan | Mapping[str, Any]) -> tuple[str, ...]:
    """What in ``plan`` (a :class:`Plan`, or a record's plan as a dict) changes the arithmetic, as
    keys of :data:`LOSSY_BOUNDS`: its gradient compression (fp16, bf16, powersgd), then ``float8``
    for float8 matmuls; ``()`` for an exact plan. The one definition of "lossy" (the gate's bound,
    the tables' ``lossy``, which plans ``recommend`` ranks)."""
    get = plan.get if isinstance(plan, Mapping) else lambda k, d: getattr(plan, k, d)
    compression = get("compression", "none") or "none"
    return (compression,) * (compression != "none") + ("float8",) * bool(get("float8", False))


def lossy_bound(plan: Plan | Mapping[str, Any]) -> Tolerance | None:
    """The gate's bound on a lossy plan's error (the largest of its kinds'), ``None`` for an exact plan."""
    return max((LOSSY_BOUNDS[k] for k in lossy_kinds(plan)), key=lambda t: t.rel, default=None)


_PP = {"pp": "all", "micro_batches": 4}

#: The named presets. Each is a partial plan; unspecified fields keep :class:`Plan` defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "single": {"dp_flavour": "none", "single_process": True},
    # data parallel
    "dp-naive": {"dp_flavour": "naive"},
    "ddp": {"dp_flavour": "ddp"},
    "ddp-static": {"dp_flavour": "ddp", "static_graph": True},
    "ddp-accum": {"dp_flavour": "ddp", "accum_steps": 2},
    # communication compression (DDP communication hooks)
    "ddp-fp16": {"dp_flavour": "ddp", "compression": "fp16"},
    "ddp-bf16": {"dp_flavour": "ddp", "compression": "bf16"},
    "ddp-powersgd": {"dp_flavour": "ddp", "compression": "powersgd"},
    # sharded data parallel
    "zero1": {"dp_flavour": "zero1"},
    "fsdp": {"dp_flavour": "fsdp", "reshard_after_forward": True},
    "fsdp-no-reshard": {"dp_flavour": "fsdp", "reshard_after_forward": False},
    # tensor parallel
    "tp": {"dp_flavour": "fsdp", "tp": "all"},
    "tp-sp": {"dp_flavour": "fsdp", "tp": "all", "sequence_parallel": True},
    # pipeline parallel
    "pp-gpipe": {**_PP, "schedule": "gpipe"},
    "pp-1f1b": {**_PP, "schedule": "1f1b"},
    "pp-interleaved": {**_PP, "schedule": "interleaved-1f1b", "virtual_stages": 2},
    "pp-zbv": {**_PP, "schedule": "zbv", "virtual_stages": 2},
    "pp-dualpipev": {**_PP, "schedule": "dualpipev", "virtual_stages": 2},
    # torch.compile per transformer block (combinable with any strategy: {base: ..., compile: true})
    "ddp-compile": {"dp_flavour": "ddp", "compile": True},
    "fsdp-compile": {"dp_flavour": "fsdp", "compile": True},
    # hybrids over a device mesh
    # hybrids over a device mesh: every dimension they name gets >= 2 ranks (resolve_plan)
    "fsdp-tp": {"dp_flavour": "fsdp", "tp": 2},
    "ddp-pp": {"dp_flavour": "ddp", "pp": 2, "schedule": "1f1b", "micro_batches": 4},
    "3d": {"dp_flavour": "fsdp", "tp": 2, "pp": 2, "schedule": "1f1b", "micro_batches": 4},
    # HSDP and activation checkpointing (issue 13)
    "hsdp": {"dp_flavour": "fsdp", "dp_shard": 2},
    "ddp-ac": {"dp_flavour": "ddp", "activation_checkpoint": "full"},
    "fsdp-sac": {"dp_flavour": "fsdp", "activation_checkpoint": "selective", "ac_every": 2},
    # GPU-only (dropped with their reason where the device cannot run them: gpu_features.py)
    "cp": {"dp_flavour": "fsdp", "cp": "all"},
    "tp-async": {"dp_flavour": "fsdp", "tp": "all", "sequence_parallel": True, "async_tp": True},
    "fsdp-float8": {"dp_flavour": "fsdp", "float8": True},
}

#: The mesh dimensions a plan fixes or gives as ``"all"`` (``dp`` takes what they leave).
MESH_DIMS = ("tp", "pp", "cp")

PLAN_KEYS = tuple(f.name for f in fields(Plan) if f.name not in ("dp", "single_process", "split_dims"))


def strategy_fields(name: str, custom: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The plan fields of a strategy: a preset, or a study-defined ``{base: preset, ...}``."""
    custom = custom or {}
    if name in custom:
        spec = dict(custom[name])
        base = spec.pop("base")
        if base not in PRESETS:
            raise KeyError(f"strategy_defs.{name}.base: unknown preset {base!r}; allowed: {sorted(PRESETS)}")
        return {**PRESETS[base], **spec}
    if name in PRESETS:
        return dict(PRESETS[name])
    raise KeyError(f"unknown strategy {name!r}; allowed: {sorted(PRESETS) + sorted(custom)}")


def resolve_plan(name: str, world_size: int, custom: dict[str, dict[str, Any]] | None = None) -> Plan:
    """The concrete plan of strategy ``name`` at ``world_size``: ``"all"`` dimensions take every
    rank the others leave; ``dp`` is derived (0 when tp * pp does not divide the world size;
    :func:`infeasible_reason` reports that).

    The dimensions the strategy splits (``split_dims``, each needing >= 2 ranks) are derived from
    its fields: a dimension given as ``"all"``; a dimension given as a number > 1; and, when no
    dimension is ``"all"`` but one is fixed > 1, ``dp`` too — it takes the remaining ranks, and the
    strategy's data-parallel flavour would silently not apply at dp = 1 (``{base: fsdp, tp: 2}``
    at 2 ranks would run as plain TP)."""
    f = strategy_fields(name, custom)
    fixed = 1
    for dim in MESH_DIMS:
        if f.get(dim, 1) != "all":
            fixed *= int(f.get(dim, 1))
    split = tuple(dim for dim in MESH_DIMS if f.get(dim) == "all")
    for dim in split:
        f[dim] = max(world_size // fixed, 1)
    fixed_dims = {dim for dim in MESH_DIMS if dim not in split and int(f.get(dim, 1)) > 1}
    named = set(split) | fixed_dims | ({"dp"} if fixed_dims and not split else set())
    plan = Plan(**f, split_dims=tuple(d for d in ("dp", *MESH_DIMS) if d in named))
    return replace(plan, dp=world_size // (plan.tp * plan.pp * plan.cp))


def theoretical_bubble(plan: Plan) -> float | None:
    """The schedule's idle fraction of a step (``None`` without a pipeline); formulas and sources
    in :data:`~benchbench.spec.schedules.SCHEDULES`."""
    if plan.pp <= 1:
        return None
    return SCHEDULES[plan.schedule].bubble(plan.pp, plan.micro_batches, plan.virtual_stages)


def _model_reason(plan: Plan, model_cfg: dict[str, Any]) -> str | None:

    arch, rules = model_cfg["arch"], arch_rules(model_cfg)
    if plan.tp > 1 and rules.tp_divides is None:
        return f"tensor parallel: the {arch!r} architecture declares no tensor-parallel plan"
    if plan.pp > 1 and not rules.pipeline:
        return f"pipeline parallel: the {arch!r} architecture declares no pipeline split"
    if plan.tp > 1:
        sizes = {**dict(rules.sizes), **model_cfg}
        for key in rules.tp_divides or ():
            if int(sizes[key]) % plan.tp:
                return f"tp = {plan.tp} does not divide {key} = {sizes[key]}"
        if plan.sequence_parallel and not rules.sequence_parallel:
            return f"sequence parallel: the {arch!r} architecture has no sequence dimension it declares splittable"
        if plan.sequence_parallel and int(model_cfg["seq_len"]) % plan.tp:
            return f"sequence parallel: tp = {plan.tp} does not divide seq_len = {model_cfg['seq_len']}"
    if plan.pp > 1 and "layers" in model_cfg:  # a custom model's stage count is its own to check
        stages = plan.pp * plan.virtual_stages
        if stages > int(model_cfg["layers"]):
            return f"pp * virtual_stages = {stages} pipeline stages exceed layers = {model_cfg['layers']}"
    return None


def _schedule_reason(plan: Plan) -> str | None:
    if plan.schedule not in SCHEDULES:
        return f"schedule {plan.schedule!r} not in {tuple(SCHEDULES)}"
    p, m, v = plan.pp, plan.micro_batches, plan.virtual_stages
    sched = SCHEDULES[plan.schedule]
    if p == 1:
        return None if v == 1 else "virtual_stages > 1 needs pp > 1"
    if not sched.multi_stage and v != 1:
        return f"schedule {plan.schedule} runs one stage per rank, got virtual_stages = {v}"
    if sched.multi_stage and v < 2:
        return f"schedule {plan.schedule} needs virtual_stages >= 2, got {v}"
    if sched.layout == "v" and v != 2:
        return f"schedule {plan.schedule} needs exactly 2 stages per rank, got virtual_stages = {v}"
    if plan.schedule != "gpipe" and m < p:
        return f"schedule {plan.schedule} needs micro_batches >= pp = {p}, got {m}"
    if sched.multi_stage and m % p:
        return f"schedule {plan.schedule} needs micro_batches to be a multiple of pp = {p}, got {m}"
    if plan.accum_steps != 1:
        return "pipeline plans accumulate over micro_batches; accum_steps must be 1"
    if plan.schedule == "dualpipev" and m < 2 * p:
        return f"schedule dualpipev needs micro_batches >= its 2 * pp = {2 * p} stages (torch's check), got {m}"
    return None


def _has_blocks(model_cfg: dict[str, Any]) -> bool:
    """Whether the model keeps transformer blocks in a ``ModuleDict`` ``blocks`` (what activation
    checkpointing and compile wrap, and a pipeline splits): gpt, llama, vit, and a custom model
    that declares a pipeline split (:mod:`benchbench.models.layout`)."""

    return arch_rules(model_cfg).pipeline


def _compile_reason(plan: Plan, model_cfg: dict[str, Any]) -> str | None:
    if not plan.compile:
        return None
    if not _has_blocks(model_cfg):
        return (
            f"compile is applied per transformer block (torchtitan's apply_compile); the {model_cfg['arch']!r} "
            "architecture has none (its layers are bare torch.nn modules)"
        )
    if plan.pp > 1 and SCHEDULES.get(plan.schedule) and SCHEDULES[plan.schedule].splits_backward:
        return (
            f"schedule {plan.schedule} splits backward into input- and weight-gradient passes, which torch "
            "does not support with torch.compile'd stages"
        )
    return None


def _flavour_reason(plan: Plan) -> str | None:
    if plan.dp_flavour not in DP_FLAVOURS:
        return f"dp_flavour {plan.dp_flavour!r} not in {tuple(DP_FLAVOURS)}"
    if plan.compression not in COMPRESSIONS:
        return f"compression {plan.compression!r} not in {COMPRESSIONS}"
    if plan.compression != "none" and plan.dp_flavour != "ddp":
        return f"compression {plan.compression} is a DDP communication hook; dp_flavour is {plan.dp_flavour}"
    if plan.dp > 1 and plan.tp > 1 and plan.dp_flavour != "fsdp":
        return f"dp x tp composes FSDP2 over DTensor; dp_flavour {plan.dp_flavour} does not (use fsdp)"
    if plan.dp > 1 and plan.pp > 1 and plan.dp_flavour not in ("ddp", "fsdp"):
        return f"dp x pp wraps each stage in ddp or fsdp; dp_flavour {plan.dp_flavour} does not"
    return None


def _gpu_steps_reason(plan: Plan, model_cfg: dict[str, Any]) -> str | None:
    """Plan rules of context parallel, async TP and float8 (whether the device can run them is
    :func:`benchbench.spec.gpu_features.device_reason`'s)."""
    arch, seq = model_cfg["arch"], model_cfg.get("seq_len")
    if plan.cp > 1 and arch != "gpt":
        return f"context parallel is defined for the gpt architecture, not {arch!r}"
    if plan.cp > 1 and plan.dp_shard:
        return "context parallel is composed here with fsdp over dp x cp, not with HSDP (dp_shard)"
    if plan.cp > 1 and (plan.pp > 1 or plan.dp_flavour != "fsdp"):
        return (
            "context parallel composes with fsdp (sharded over dp x cp, as torchtitan) and tp, "
            f"not with pp = {plan.pp} or dp_flavour {plan.dp_flavour}"
        )
    if plan.cp > 1 and int(seq) % (2 * plan.cp):
        return f"context parallel: 2 * cp = {2 * plan.cp} (head-tail load balancing) does not divide seq_len = {seq}"
    if plan.async_tp and (plan.tp < 2 or not plan.sequence_parallel):
        return (
            "async_tp overlaps sequence parallel's all-gather -> matmul and matmul -> reduce-scatter: needs "
            f"tp >= 2 and sequence_parallel, got tp = {plan.tp}, sequence_parallel = {plan.sequence_parallel}"
        )
    if plan.float8 and plan.tp > 1:
        return "float8 is composed here with data and pipeline parallel, not tp (torchao's Float8*Parallel layouts)"
    width = int(model_cfg.get("hidden", model_cfg.get("width", 0)))
    if plan.float8 and width % 16:
        return f"float8: torch._scaled_mm needs matmul dimensions divisible by 16; hidden (width) = {width}"
    return None


def _hsdp_reason(plan: Plan) -> str | None:
    """HSDP: dp_shard = 0 (plain FSDP) or k >= 2 dividing dp with dp / k >= 2 replicas, under fsdp,
    so a plan named HSDP never runs collapsed into FSDP (one replica) or DDP (shards of one)."""
    k = plan.dp_shard
    if k == 0:
        return None
    if k < 2:
        return f"dp_shard = {k}: allowed 0 (shard over all dp ranks) or a shard group size >= 2"
    if plan.dp_flavour != "fsdp":
        return f"dp_shard = {k} (HSDP) shards with FSDP2; dp_flavour is {plan.dp_flavour} (use fsdp)"
    if plan.dp % k:
        return f"HSDP: dp_shard = {k} does not divide dp = {plan.dp}"
    if plan.dp // k < 2:
        return f"HSDP: dp = {plan.dp} / dp_shard = {k} leaves {plan.dp // k} replica (needs >= 2; else it is fsdp)"
    return None


def checkpointed_blocks(names: list[str], mode: str, every: int) -> list[str]:
    """The names (model indices) of the blocks activation checkpointing ``mode`` wraps among
    ``names``: all (``full``), every ``every``-th (``selective``: indices every-1, 2·every-1, …)."""
    if mode == "full":
        return list(names)
    if mode == "selective":
        return [n for n in names if (int(n) + 1) % every == 0]
    return []


def _checkpoint_reason(plan: Plan, model_cfg: dict[str, Any]) -> str | None:
    """Activation checkpointing wraps transformer blocks: gpt only, a known mode, ac_every >= 1."""
    mode = plan.activation_checkpoint
    if mode not in ACTIVATION_CHECKPOINTS:
        return f"activation_checkpoint {mode!r} not in {ACTIVATION_CHECKPOINTS}"
    if mode == "none":
        return None
    if not _has_blocks(model_cfg):
        return f"activation checkpointing wraps transformer blocks; the {model_cfg['arch']!r} architecture has none"
    if plan.ac_every < 1:
        return f"ac_every = {plan.ac_every}: allowed an integer >= 1 (checkpoint every ac_every-th block)"
    if mode == "selective" and "layers" in model_cfg and plan.ac_every > int(model_cfg["layers"]):
        return f"selective checkpointing: ac_every = {plan.ac_every} > layers = {model_cfg['layers']} (no block)"
    return None


def infeasible_reason(plan: Plan, model_cfg: dict[str, Any], world_size: int, global_batch: int) -> str | None:
    """Why ``plan`` cannot train ``model_cfg`` on ``world_size`` ranks at ``global_batch``."""
    if plan.single_process and world_size != 1:
        return f"single-process plan needs world_size 1, got {world_size}"
    cp_name, cp_size = ("*cp", f"*{plan.cp}") if plan.cp > 1 else ("", "")
    if world_size % (plan.tp * plan.pp * plan.cp):
        return f"world_size {world_size} is not divisible by tp*pp{cp_name} = {plan.tp}*{plan.pp}{cp_size}"
    if plan.dp * plan.tp * plan.pp * plan.cp != world_size:
        return f"world_size {world_size} != dp*tp*pp{cp_name} = {plan.dp}*{plan.tp}*{plan.pp}{cp_size}"
    for dim in plan.split_dims:
        if getattr(plan, dim) < 2:
            return (
                f"{dim} = {getattr(plan, dim)} at world_size {world_size}: the strategy splits "
                f"{' x '.join(plan.split_dims)} and each needs >= 2 ranks (it would run collapsed)"
            )
    reason = (
        _flavour_reason(plan)
        or _model_reason(plan, model_cfg)
        or _schedule_reason(plan)
        or _gpu_steps_reason(plan, model_cfg)
        or _hsdp_reason(plan)
        or _checkpoint_reason(plan, model_cfg)
    )
    reason = reason or _compile_reason(plan, model_cfg)
    if reason:
        return reason
    if global_batch % plan.dp:
        return f"global batch {global_batch} is not divisible by dp = {plan.dp}"
    local = global_batch // plan.dp
    if local % plan.accum_steps:
        return f"batch per dp rank {local} is not divisible by accum_steps = {plan.accum_steps}"
    if plan.pp > 1 and local % plan.micro_batches:
        return f"batch per dp rank {local} is not divisible by micro_batches = {plan.micro_batches}"
    return None
