"""The plan space the cost model searches: the presets, and hybrids generated for a model, a
hardware profile and a world size, each as a study-style ``strategy_defs`` entry with a readable
safe name, so that any plan the cost model recommends can be pasted into a study.

Generated (only combinations :func:`~benchbench.spec.plan.infeasible_reason` can accept):

* tp in powers of 2 up to the profile's ``devices_per_node`` (a tensor-parallel group stays on
  one node's fast links) that divide what the architecture's TP plan splits;
* pp in powers of 2 up to the layers, with schedule ``1f1b`` (one stage per rank) or
  ``interleaved-1f1b`` (2 stages per rank, where 2·pp ≤ layers) and micro-batches pp, 2·pp, 4·pp;
* dp = world size / (tp·pp) ≥ 1, with flavour ddp, zero1 or fsdp where dp ≥ 2 (fsdp alone beside
  tp, ddp or fsdp beside pp: the rules of plan.py); pure data parallelism is the presets'.

Names: ``<flavour>.tp<t>.pp<p>.<schedule>.m<m>`` with absent parts left out (``fsdp.tp4``,
``ddp.pp2.1f1b.m8``, ``tp8.pp4.interleaved-1f1b.m16``: no flavour where dp = 1). A plan with dp = 1
gives its last split dimension as ``"all"`` (plan.py's ``resolve_plan`` needs dp ≥ 2 where every
dimension is fixed), so its name holds at the world size it was generated for.
"""

from __future__ import annotations

from typing import Any

from benchbench.models.rules import arch_rules
from benchbench.spec.hardware import HardwareProfile
from benchbench.spec.plan import PRESETS, infeasible_reason, resolve_plan

GENERATED_FLAVOURS = ("ddp", "zero1", "fsdp")
#: schedule -> stages per rank
GENERATED_SCHEDULES = {"1f1b": 1, "interleaved-1f1b": 2}
MICRO_BATCH_FACTORS = (1, 2, 4)  # micro-batches = factor × pp


def powers_of_two(limit: int) -> list[int]:
    """1, 2, 4, … up to ``limit``."""
    out, k = [], 1
    while k <= limit:
        out.append(k)
        k *= 2
    return out


def tp_choices(model_cfg: dict[str, Any], profile: HardwareProfile) -> list[int]:
    """Tensor-parallel sizes: powers of 2 ≤ devices per node dividing the sizes the architecture's
    TP plan splits (:data:`benchbench.models.rules.RULES`: a gpt's heads, hidden and vocab; a Llama's
    heads, kv_heads, ffn_hidden, vocab; ...); [1] where it declares no TP plan."""
    rules = arch_rules(model_cfg)
    if rules.tp_divides is None:
        return [1]
    sizes = {**dict(rules.sizes), **model_cfg}
    return [t for t in powers_of_two(profile.devices_per_node) if all(int(sizes[k]) % t == 0 for k in rules.tp_divides)]


def pp_choices(model_cfg: dict[str, Any]) -> list[int]:
    """Pipeline sizes: powers of 2 up to the layers, where the architecture declares a split."""
    if not arch_rules(model_cfg).pipeline or "layers" not in model_cfg:
        return [1]
    return powers_of_two(int(model_cfg["layers"]))


def plan_name(flavour: str | None, tp: int, pp: int, schedule: str | None, m: int) -> str:
    """The readable safe name of a generated plan (module docstring)."""
    parts = [flavour] if flavour else []
    parts += [f"tp{tp}"] if tp > 1 else []
    parts += [f"pp{pp}", str(schedule), f"m{m}"] if pp > 1 else []
    return ".".join(parts)


def _pipeline_variants(pp: int, layers: int) -> list[dict[str, Any]]:
    if pp == 1:
        return [{}]
    out = []
    for schedule, v in GENERATED_SCHEDULES.items():
        if pp * v <= layers:
            out += [{"schedule": schedule, "virtual_stages": v, "micro_batches": k * pp} for k in MICRO_BATCH_FACTORS]
    return out


def _flavours(dp: int, tp: int, pp: int) -> list[str | None]:
    if dp == 1:
        return [None]
    return [f for f in GENERATED_FLAVOURS if (tp == 1 or f == "fsdp") and (pp == 1 or f != "zero1")]


def generated_plans(model_cfg: dict[str, Any], profile: HardwareProfile, world_size: int) -> dict[str, dict[str, Any]]:
    """Hybrid plans for ``world_size`` ranks as ``strategy_defs`` entries, by name (module docstring)."""
    out: dict[str, dict[str, Any]] = {}
    layers = int(model_cfg.get("layers", 1))
    for tp in tp_choices(model_cfg, profile):
        for pp in pp_choices(model_cfg):
            if (tp == 1 and pp == 1) or world_size % (tp * pp):
                continue
            dp = world_size // (tp * pp)
            for flavour in _flavours(dp, tp, pp):
                for variant in _pipeline_variants(pp, layers):
                    name = plan_name(flavour, tp, pp, variant.get("schedule"), variant.get("micro_batches", 1))
                    out[name] = _spec(flavour, dp, tp, pp, variant)
    return out


def _spec(flavour: str | None, dp: int, tp: int, pp: int, variant: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"base": "ddp", "dp_flavour": flavour or "ddp", "tp": tp, "pp": pp, **variant}
    if dp == 1:
        spec["pp" if pp > 1 else "tp"] = "all"
    return spec


def candidates(
    model_cfg: dict[str, Any], profile: HardwareProfile, world_size: int, global_batch: int
) -> dict[str, dict[str, Any] | None]:
    """Every plan worth predicting at ``world_size``: the presets the plan rules accept (value
    ``None``: a preset needs no definition) and the generated hybrids; a generated plan equal to a
    preset (or to an earlier one) at this world size is left out, so each plan appears once, under
    the preset's name where one exists."""
    out: dict[str, dict[str, Any] | None] = {}
    seen = set()
    defs = generated_plans(model_cfg, profile, world_size)
    for name, spec in [*((p, None) for p in PRESETS), *defs.items()]:
        plan = resolve_plan(name, world_size, defs)
        key = tuple(sorted((k, str(v)) for k, v in plan.to_dict().items() if k != "split_dims"))
        if key in seen or infeasible_reason(plan, model_cfg, world_size, global_batch):
            continue
        seen.add(key)
        out[name] = spec
    return out
