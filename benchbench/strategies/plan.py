"""A strategy is a named preset of a :class:`Plan`; new combinations are config, not code.

A plan fixes the mesh dimensions (``tp``, ``pp``; ``dp`` is what the world size leaves) and the
data-parallel flavour. :func:`resolve_plan` turns a strategy name (a preset, or a study-defined
strategy based on one) plus the world size into a concrete plan; :func:`infeasible_reason`
states why a plan cannot run a model at a world size and batch, or returns ``None``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

#: Data-parallel flavours: ``none`` (one process), ``naive`` (hand-written all-reduce after
#: backward), ``ddp`` (torch DistributedDataParallel).
DP_FLAVOURS = ("none", "naive", "ddp")


@dataclass(frozen=True)
class Plan:
    """How one job spreads the model over its ranks."""

    dp_flavour: str = "ddp"
    tp: int = 1
    pp: int = 1
    dp: int = 1  # derived: world_size // (tp * pp)
    single_process: bool = False  # the plan runs in one process, without a process group
    bucket_cap_mb: float = 25.0  # DDP gradient bucket size (torch's default)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The named presets. Each is a partial plan; unspecified fields keep :class:`Plan` defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "single": {"dp_flavour": "none", "single_process": True},
    "dp-naive": {"dp_flavour": "naive"},
    "ddp": {"dp_flavour": "ddp"},
}

PLAN_KEYS = tuple(f.name for f in fields(Plan) if f.name not in ("dp", "single_process"))


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
    """The concrete plan of strategy ``name`` at ``world_size`` (``dp`` derived, may be 0 when
    tp * pp does not divide the world size; :func:`infeasible_reason` reports that)."""
    plan = Plan(**strategy_fields(name, custom))
    return replace(plan, dp=world_size // (plan.tp * plan.pp))


def infeasible_reason(plan: Plan, model_cfg: dict[str, Any], world_size: int, global_batch: int) -> str | None:
    """Why ``plan`` cannot train ``model_cfg`` on ``world_size`` ranks at ``global_batch``."""
    if plan.single_process and world_size != 1:
        return f"single-process plan needs world_size 1, got {world_size}"
    if plan.dp_flavour not in DP_FLAVOURS:
        return f"dp_flavour {plan.dp_flavour!r} not in {DP_FLAVOURS}"
    if world_size % (plan.tp * plan.pp):
        return f"world_size {world_size} is not divisible by tp*pp = {plan.tp * plan.pp}"
    if plan.dp * plan.tp * plan.pp != world_size:
        return f"world_size {world_size} != dp*tp*pp = {plan.dp}*{plan.tp}*{plan.pp}"
    if global_batch % plan.dp:
        return f"global batch {global_batch} is not divisible by dp = {plan.dp}"
    return None
