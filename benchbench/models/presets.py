"""Named shapes of the built-in architectures (:data:`PRESETS`: Llama 3 8B / 70B / 1B, a 150M
Llama, ViT-B/16, tiny ones for tests) and their expansion into a model config
(:func:`expand_preset`). No torch: study expansion (every Snakemake run) reads them.
"""

from __future__ import annotations

from typing import Any

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
