"""One colour per strategy, the same in every figure of every study: a fixed colour for each preset
(families: data parallel blue, compression orange, sharded green, tensor parallel purple, pipeline
red, hybrids brown/cyan) and, for a study-defined name, a colour seeded by a hash of the name."""

from __future__ import annotations

import colorsys
import hashlib

#: The presets' colours (:data:`benchbench.spec.plan.PRESETS`); pairwise distinct.
PRESET_COLOURS: dict[str, str] = {
    "single": "#222222",
    "dp-naive": "#9ecae1",
    "ddp": "#1f77b4",
    "ddp-static": "#08306b",
    "ddp-accum": "#4292c6",
    "ddp-fp16": "#ff7f0e",
    "ddp-bf16": "#fdd0a2",
    "ddp-powersgd": "#a63603",
    "zero1": "#a1d99b",
    "fsdp": "#2ca02c",
    "fsdp-no-reshard": "#00441b",
    "tp": "#9467bd",
    "tp-sp": "#cbc9e2",
    "pp-gpipe": "#d62728",
    "pp-1f1b": "#fc9272",
    "pp-interleaved": "#67000d",
    "pp-zbv": "#e377c2",
    "pp-dualpipev": "#c51b8a",
    "ddp-compile": "#6baed6",
    "fsdp-compile": "#41ab5d",
    "fsdp-tp": "#8c564b",
    "ddp-pp": "#bcbd22",
    "3d": "#17becf",
    "cp": "#7f7f7f",
    "tp-async": "#54278f",
    "fsdp-float8": "#74c476",
    "hsdp": "#9e9ac8",
    "ddp-ac": "#393b79",
    "fsdp-sac": "#637939",
}


def strategy_colour(name: str) -> str:
    """The colour (``#rrggbb``) of strategy ``name``: the preset's, else one derived from the name
    alone (an MD5 of it picks hue and lightness), so it is the same in every study and run."""
    if name in PRESET_COLOURS:
        return PRESET_COLOURS[name]
    digest = hashlib.md5(name.encode()).digest()
    hue = digest[0] / 256 + digest[1] / 65536
    value = 0.55 + 0.3 * digest[2] / 255
    r, g, b = colorsys.hsv_to_rgb(hue, 0.7, value)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
