"""Scaling plots (seaborn): throughput and efficiency against world size, one panel per model,
one line per strategy (throughput with the ideal-scaling line, efficiency with y = 1), the
strategies side by side as bars of throughput per world size, and model state per rank measured
next to its estimate."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from benchbench.layout import PLOT_FORMATS, PLOTS


def _save(grid: sns.FacetGrid, paths: list[Path], world_sizes: list[int] | None) -> list[Path]:
    for ax in grid.axes.flat if world_sizes else []:
        ax.set_xticks(world_sizes)
    for path in paths:
        fmt = path.suffix.lstrip(".")
        tmp = path.with_name(f".{path.name}.tmp")
        meta = {"Date": None} if fmt == "svg" else {}  # reproducible files: no time stamp
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.savefig(tmp, format=fmt, dpi=110, bbox_inches="tight", metadata=meta)
        tmp.replace(path)
    plt.close(grid.figure)
    return paths


def _by_plot(outputs: Iterable[str | Path]) -> dict[str, list[Path]]:
    """Output files grouped by plot name (the stem); each must be a known plot and format."""
    wanted: dict[str, list[Path]] = {}
    for p in map(Path, outputs):
        if p.stem not in PLOTS or p.suffix.lstrip(".") not in PLOT_FORMATS:
            raise ValueError(f"cannot draw {p}: plots are {PLOTS}, formats {PLOT_FORMATS}")
        wanted.setdefault(p.stem, []).append(p)
    return wanted


def _ideal(data: pd.DataFrame, **_: object) -> None:
    """Ideal scaling in one panel: the ws-1 baseline throughput times N."""
    base = data["throughput"] / data["speedup"]
    base = base.dropna()
    if base.empty:
        return
    ws = sorted(data["world_size"].unique())
    plt.plot(ws, [base.iloc[0] * n for n in ws], ls="--", color="0.4", lw=1, label="ideal")


def _series(scaling: pd.DataFrame) -> pd.DataFrame:
    """The scaling table with a ``series`` label per line (strategy, plus hardware when several)."""
    if scaling.empty:
        empty = {"model": "(no ok runs)", "world_size": 1, "throughput": 0.0, "efficiency": 0.0, "speedup": 1.0}
        scaling = pd.DataFrame([{**empty, "strategy": "-", "hardware": "-"}])
    one_hw = scaling["hardware"].nunique() == 1
    return scaling.assign(series=scaling["strategy"] if one_hw else scaling["strategy"] + " @ " + scaling["hardware"])


def _line_plot(data: pd.DataFrame, y: str) -> sns.FacetGrid:
    height = max(3.4, 0.25 * data["series"].nunique())  # room for the legend beside the panels
    g = sns.relplot(
        data=data, x="world_size", y=y, col="model", hue="series", kind="line", marker="o",
        facet_kws={"sharey": False}, height=height,
    )  # fmt: skip
    g.set_titles("{col_name}")
    return g


def _throughput(data: pd.DataFrame) -> sns.FacetGrid:
    g = _line_plot(data, "throughput")
    g.map_dataframe(_ideal)
    g.set_axis_labels("world size (ranks)", "throughput (samples/s)")
    g.figure.suptitle("Throughput vs world size (dashed: ideal scaling from the ws-1 baseline)", y=1.02, x=0.4)
    return g


def _efficiency(data: pd.DataFrame) -> sns.FacetGrid:
    g = _line_plot(data, "efficiency")
    g.refline(y=1.0, color="0.4", lw=1)
    g.set_axis_labels("world size (ranks)", "scaling efficiency")
    g.figure.suptitle("Scaling efficiency vs world size (1.0 = ideal)", y=1.02, x=0.4)
    return g


def _bars(frame: pd.DataFrame, x: str, hue: str, hue_order: list[str], xlabel: str, title: str) -> sns.FacetGrid:
    """Horizontal bars: one row per series, one bar per ``hue`` value, one panel per model."""
    order = sorted(frame["series"].unique())
    g = sns.catplot(
        data=frame, y="series", x=x, hue=hue, col="model", kind="bar", order=order, hue_order=hue_order,
        sharex=False, height=max(3.4, 0.3 * len(order)), aspect=1.3,
    )  # fmt: skip
    g.set_axis_labels(xlabel, "")
    g.set_titles("{col_name}")
    g.figure.suptitle(title, y=1.02)
    return g


def _strategies(data: pd.DataFrame) -> sns.FacetGrid:
    """Strategies side by side: one bar per strategy and world size."""
    world_sizes = sorted(int(n) for n in data["world_size"].unique())
    return _bars(
        data.assign(ranks=data["world_size"].astype(str)), "throughput", "ranks", [str(n) for n in world_sizes],
        "throughput (samples/s)", "Strategies side by side: throughput by world size",
    )


def _memory_frame(data: pd.DataFrame) -> pd.DataFrame:
    """Model state per rank, measured and estimated (MiB), at each model's largest world size,
    with the unsharded ``single`` run beside it as the reference."""
    cols = ("model_state_bytes", "model_state_bytes_est")
    if not all(c in data for c in cols) or data[list(cols)].isna().all().all():
        return pd.DataFrame([{"model": "(no memory figures)", "series": "-", "MiB": 0.0, "figure": "measured"}])
    largest = data["world_size"] == data.groupby("model")["world_size"].transform("max")
    top = data[largest | (data["strategy"] == "single")]
    long = top.melt(id_vars=["model", "series"], value_vars=list(cols), var_name="figure", value_name="bytes")
    long["figure"] = long["figure"].map({"model_state_bytes": "measured", "model_state_bytes_est": "estimate"})
    return long.assign(MiB=long["bytes"] / 2**20).dropna(subset=["MiB"])


def _memory(data: pd.DataFrame) -> sns.FacetGrid:
    """Model state (parameters + gradients + optimizer state) of the rank holding the most."""
    frame = _memory_frame(data)
    return _bars(
        frame, "MiB", "figure", [h for h in ("measured", "estimate") if h in set(frame["figure"])],
        "model state per rank (MiB)",
        "Model state per rank (largest world size; single for reference): measured vs estimate",
    )


_DRAW = {"throughput": _throughput, "efficiency": _efficiency, "strategies": _strategies, "memory": _memory}
_WORLD_SIZE_AXIS = {"throughput", "efficiency"}


def plot_scaling(scaling: pd.DataFrame, outputs: Iterable[str | Path]) -> list[Path]:
    """Draw each plot named by an output file (``<plot>.<format>``, :data:`benchbench.layout.PLOTS`)."""
    sns.set_theme(style="whitegrid", context="notebook")
    data = _series(scaling)
    world_sizes = sorted(int(n) for n in data["world_size"].unique())
    written: list[Path] = []
    for name, paths in _by_plot(outputs).items():
        written += _save(_DRAW[name](data), paths, world_sizes if name in _WORLD_SIZE_AXIS else None)
    return written
