"""Architectures beyond the built-in MLP and GPT: a Llama-style decoder (:mod:`.llama`), a vision
transformer (:mod:`.vit`) and the user's own model (:mod:`.custom`), each in its own module and
registered in :data:`benchbench.models.registry.ARCHITECTURES`.

This package's ``__init__`` imports no torch: study expansion (every Snakemake run) reads from it
the named shape presets (:data:`PRESETS`, :func:`expand_preset`) and which parallel plans each
architecture allows (:data:`RULES`, used by :mod:`benchbench.spec.plan`).

How a model declares its parallel layout (torchtitan-style: the model declares, the strategy
applies): every transformer here keeps its repeated blocks in a ``ModuleDict`` ``blocks`` (names
``"0"``, ``"1"``, ...: a pipeline stage deletes the blocks it does not own and the survivors keep
their names) and provides

* ``tp_plan(sequence_parallel) -> {module path: ParallelStyle}`` over the parts it still holds
  (:func:`benchbench.strategies.tensor_parallel.apply_tp` applies it);
* ``PIPELINE_FIRST`` / ``PIPELINE_LAST``: the attributes that only the first / last pipeline stage
  keeps (set to ``None`` elsewhere; :func:`stage_forward` skips ``None`` parts);
* the blocks themselves are the FSDP units, and the units activation checkpointing and
  compilation apply to (:func:`benchbench.models.registry.model_blocks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def stage_forward(model: Any, x: Any) -> Any:
    """The forward of a model or of one of its pipeline stages: the ``PIPELINE_FIRST`` parts it
    holds, its ``blocks`` in order, then the ``PIPELINE_LAST`` parts it holds (a pruned part is
    ``None`` and skipped)."""
    for name in model.PIPELINE_FIRST:
        if (part := getattr(model, name)) is not None:
            x = part(x)
    for block in model.blocks.values():
        x = block(x)
    for name in model.PIPELINE_LAST:
        if (part := getattr(model, name)) is not None:
            x = part(x)
    return x


@dataclass(frozen=True)
class Rules:
    """What an architecture allows, without building it (no torch)."""

    tp_divides: tuple[str, ...] | None  # size keys tp must divide; None: no tensor parallel plan
    sequence_parallel: bool  # has a sequence dimension that sequence parallelism may split
    pipeline: bool  # has ``layers`` blocks a pipeline may split
    sizes: tuple[tuple[str, int], ...] = ()  # sizes not in the model config (a custom model's tp_divides)


#: Per architecture: the plans it allows. ``custom`` is decided by its entry point
#: (:func:`benchbench.models.custom.rules`).
RULES: dict[str, Rules] = {
    "mlp": Rules(None, False, False),
    "gpt": Rules(("heads", "hidden", "vocab"), True, True),
    "llama": Rules(("heads", "kv_heads", "ffn_hidden", "vocab"), True, True),
    "vit": Rules(("heads", "hidden", "mlp_hidden", "classes"), False, True),
}


def arch_rules(model_cfg: dict[str, Any]) -> Rules:
    """The plans ``model_cfg``'s architecture allows (a custom model's: what its entry point provides)."""
    if model_cfg["arch"] == "custom":
        from benchbench.models.custom import rules

        return rules(model_cfg)
    return RULES[model_cfg["arch"]]


def boundary(model_cfg: dict[str, Any]) -> tuple[int, int, int]:
    """(tokens, width, outputs) of one sample, for the cost model's activation-sized messages (a
    block's input: tokens x width; the head's output: outputs elements): a sequence model's
    seq_len, hidden, seq_len·vocab; a ViT's 1 + patches, hidden, classes; a custom model's are
    not known (0: its tensor and pipeline messages are not predicted)."""
    if "seq_len" in model_cfg:
        s = int(model_cfg["seq_len"])
        return s, int(model_cfg["hidden"]), s * int(model_cfg["vocab"])
    if model_cfg["arch"] == "vit":
        tokens = 1 + (int(model_cfg["image_size"]) // int(model_cfg["patch"])) ** 2
        return tokens, int(model_cfg["hidden"]), int(model_cfg["classes"])
    return 0, 0, 0


#: Named shapes. Llama 3 8B / 70B: Meta's release and torchtitan's ``llama3_configs`` (ffn_hidden
#: = multiple_of·⌈ffn_dim_multiplier·⌊8·dim/3⌋ / multiple_of⌉: 8B 1.3, 1024 -> 14336; 70B 1.3, 4096
#: -> 28672); 1b: Llama 3.2 1B's dimensions (Meta ties its embedding and head, here they are
#: untied: +262.7M parameters); 150m: a benchbench shape of the same family (dim 768, 16 layers,
#: GQA 12/4, SwiGLU 2048 = 8·768/3, Llama-2's 32000 vocabulary); tiny: for tests. ViT-B/16:
#: Dosovitskiy et al. 2021, Table 1 (224 px, 16 px patches, ImageNet-1k head).
PRESETS: dict[str, dict[str, dict[str, int]]] = {
    "llama": {
        "8b": {
            "layers": 32,
            "hidden": 4096,
            "heads": 32,
            "kv_heads": 8,
            "ffn_hidden": 14336,
            "vocab": 128256,
            "rope_theta": 500000,
            "seq_len": 8192,
        },
        "70b": {
            "layers": 80,
            "hidden": 8192,
            "heads": 64,
            "kv_heads": 8,
            "ffn_hidden": 28672,
            "vocab": 128256,
            "rope_theta": 500000,
            "seq_len": 8192,
        },
        "1b": {
            "layers": 16,
            "hidden": 2048,
            "heads": 32,
            "kv_heads": 8,
            "ffn_hidden": 8192,
            "vocab": 128256,
            "rope_theta": 500000,
            "seq_len": 8192,
        },
        "150m": {
            "layers": 16,
            "hidden": 768,
            "heads": 12,
            "kv_heads": 4,
            "ffn_hidden": 2048,
            "vocab": 32000,
            "rope_theta": 10000,
            "seq_len": 2048,
        },
        "tiny": {
            "layers": 4,
            "hidden": 32,
            "heads": 4,
            "kv_heads": 2,
            "ffn_hidden": 64,
            "vocab": 64,
            "rope_theta": 10000,
            "seq_len": 16,
        },
    },
    "vit": {
        "b16": {
            "image_size": 224,
            "patch": 16,
            "channels": 3,
            "layers": 12,
            "hidden": 768,
            "heads": 12,
            "mlp_hidden": 3072,
            "classes": 1000,
        },
        "tiny": {
            "image_size": 16,
            "patch": 4,
            "channels": 3,
            "layers": 4,
            "hidden": 32,
            "heads": 4,
            "mlp_hidden": 64,
            "classes": 8,
        },
    },
}

#: Preset keys a study may still set next to ``preset`` (everything else is the preset's).
PRESET_OVERRIDABLE = ("seq_len",)


def expand_preset(name: str, model_cfg: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``model_cfg`` with its ``preset``'s size keys filled in, and the errors (naming the key and
    the allowed values): an unknown preset, or a size key set next to a preset to another value
    (the preset means exactly its dimensions; only :data:`PRESET_OVERRIDABLE` keys may be changed)."""
    arch, preset = model_cfg["arch"], model_cfg.get("preset")
    if preset is None:
        return model_cfg, []
    table = PRESETS.get(arch, {})
    if preset not in table:
        allowed = sorted(table)
        return model_cfg, [f"models.{name}.preset: {preset!r} is not allowed for arch {arch!r}; allowed: {allowed}"]
    shape = table[preset]
    # a key equal to the preset's value is no clash: a completed config (the workflow passes one
    # on as JSON) checks again unchanged
    clash = sorted(k for k in model_cfg if k in shape and k not in PRESET_OVERRIDABLE and model_cfg[k] != shape[k])
    if clash:
        return model_cfg, [
            f"models.{name}.{clash[0]}: set next to preset {preset!r}, which fixes it; allowed: only "
            f"{list(PRESET_OVERRIDABLE)} next to a preset, or no preset"
        ]
    return {**model_cfg, **{k: v for k, v in shape.items() if k not in model_cfg}}, []
