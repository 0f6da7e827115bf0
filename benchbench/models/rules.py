"""Which parallel plans each architecture allows, without building it (no torch): study expansion
reads them (:func:`arch_rules`, used by :mod:`benchbench.spec.plan` and
:mod:`benchbench.costmodel.plan_space`); a custom model's follow from what its entry point provides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchbench.models.custom import load


@dataclass(frozen=True)
class Rules:
    """What an architecture allows, without building it (no torch)."""

    tp_divides: tuple[str, ...] | None  # size keys tp must divide; None: no tensor parallel plan
    sequence_parallel: bool  # has a sequence dimension that sequence parallelism may split
    pipeline: bool  # has ``layers`` blocks a pipeline may split
    sizes: tuple[tuple[str, int], ...] = ()  # sizes not in the model config (a custom model's tp_divides)


#: Per architecture: the plans it allows. ``custom`` is decided by its entry point
#: (:func:`custom_rules`).
RULES: dict[str, Rules] = {
    "mlp": Rules(None, False, False),
    "gpt": Rules(("heads", "hidden", "vocab"), True, True),
    "llama": Rules(("heads", "kv_heads", "ffn_hidden", "vocab"), True, True),
    "vit": Rules(("heads", "hidden", "mlp_hidden", "classes"), False, True),
}


def custom_rules(model_cfg: dict[str, Any]) -> Rules:
    """The plans a custom model's entry point supports: TP with a ``tp_plan``, pipelines with
    ``pipeline`` (:mod:`benchbench.models.custom`)."""
    spec = load(model_cfg["entry"], model_cfg["path"])
    tp = tuple(spec.tp_divides) if spec.tp_plan is not None else None
    return Rules(tp, bool(spec.sequence_parallel), spec.pipeline is not None, tuple(spec.tp_divides.items()))


def arch_rules(model_cfg: dict[str, Any]) -> Rules:
    """The plans ``model_cfg``'s architecture allows (a custom model's: what its entry point provides)."""
    if model_cfg["arch"] == "custom":
        return custom_rules(model_cfg)
    return RULES[model_cfg["arch"]]
