"""Scaling plots (seaborn): throughput and efficiency against world size, one panel per model,
one line per strategy (throughput with the ideal-scaling line, efficiency with y = 1), and the
strategies side by side as bars of throughput per world size."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

FORMATS = ("svg", "png")


def _save(grid: sns.FacetGrid, out_dir: Path, stem: str, world_sizes: list[int] | None) -> list[Path]:
    for ax in grid.axes.flat if world_sizes else []:
        ax.set_xticks(world_sizes)
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{stem}.{fmt}"
        tmp = path.with_name(f".{path.name}.tmp")
        meta = {"Date": None} if fmt == "svg" else {}  # reproducible files: no time stamp
        grid.savefig(tmp, format=fmt, dpi=110, bbox_inches="tight", metadata=meta)
        tmp.replace(path)
        paths.append(path)
    plt.close(grid.figure)
    return paths


def _ideal(data: pd.DataFrame, **_: object) -> None:
    """Ideal scaling in one panel: the ws-1 baseline throughput times N."""
    base = data["throughput"] / data["speedup"]
    base = base.dropna()
    if base.empty:
        return
    ws = sorted(data["world_size"].unique())
    plt.plot(ws, [base.iloc[0] * n for n in ws], ls="--", color="0.4", lw=1, label="ideal")


def plot_scaling(scaling: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write ``throughput.{svg,png}`` and ``efficiency.{svg,png}``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid", context="notebook")
    if scaling.empty:
        empty = {"model": "(no ok runs)", "world_size": 1, "throughput": 0.0, "efficiency": 0.0, "speedup": 1.0}
        scaling = pd.DataFrame([{**empty, "strategy": "-", "hardware": "-"}])
    one_hw = scaling["hardware"].nunique() == 1
    data = scaling.assign(series=scaling["strategy"] if one_hw else scaling["strategy"] + " @ " + scaling["hardware"])
    n_series = data["series"].nunique()
    height = max(3.4, 0.25 * n_series)  # room for the legend beside the panels
    kw = dict(col="model", hue="series", kind="line", marker="o", facet_kws={"sharey": False}, height=height)
    paths: list[Path] = []
    world_sizes = sorted(int(n) for n in data["world_size"].unique())

    g = sns.relplot(data=data, x="world_size", y="throughput", **kw)
    g.map_dataframe(_ideal)
    g.set_axis_labels("world size (ranks)", "throughput (samples/s)")
    g.set_titles("{col_name}")
    g.figure.suptitle("Throughput vs world size (dashed: ideal scaling from the ws-1 baseline)", y=1.02, x=0.4)
    paths += _save(g, out, "throughput", world_sizes)

    g = sns.relplot(data=data, x="world_size", y="efficiency", **kw)
    g.refline(y=1.0, color="0.4", lw=1)
    g.set_axis_labels("world size (ranks)", "scaling efficiency")
    g.set_titles("{col_name}")
    g.figure.suptitle("Scaling efficiency vs world size (1.0 = ideal)", y=1.02, x=0.4)
    paths += _save(g, out, "efficiency", world_sizes)

    # strategies side by side: one bar per strategy and world size
    order = sorted(data["series"].unique())
    g = sns.catplot(
        data=data.assign(ranks=data["world_size"].astype(str)), y="series", x="throughput", hue="ranks",
        col="model", kind="bar", order=order, hue_order=[str(n) for n in world_sizes], sharex=False,
        height=max(3.4, 0.3 * len(order)), aspect=0.9,
    )  # fmt: skip
    g.set_axis_labels("throughput (samples/s)", "")
    g.set_titles("{col_name}")
    g.figure.suptitle("Strategies side by side: throughput by world size", y=1.02)
    paths += _save(g, out, "strategies", None)
    return paths
