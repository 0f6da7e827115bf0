"""Scaling plots (seaborn): throughput and efficiency against world size, one panel per model,
one line per strategy (throughput with the ideal-scaling line, efficiency with y = 1), the
strategies side by side as bars of throughput per world size, and model state per rank measured
next to its estimate."""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from benchbench.layout import PLOT_FORMATS, PLOTS

#: The scaling table's name columns (text, whatever they look like).
ID_COLUMNS = ("model", "hardware", "strategy", "series", "baseline")
NO_OK_RUNS = "no ok runs (every job failed or was infeasible; the report lists why)"
NO_MEMORY = "no memory figures (the scaling table has no model-state bytes)"
NO_BASELINE = (
    "no baseline: efficiency needs a world-size-1 run of the same model and hardware "
    "(the single strategy, or the strategy's own at 1 rank)"
)


def _save(fig: Figure, paths: list[Path]) -> list[Path]:
    for path in paths:
        fmt = path.suffix.lstrip(".")
        tmp = path.with_name(f".{path.name}.tmp")
        meta = {"Date": None} if fmt == "svg" else {}  # reproducible files: no time stamp
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(tmp, format=fmt, dpi=110, bbox_inches="tight", metadata=meta)
        tmp.replace(path)
    plt.close(fig)
    return paths


def read_table(path: str | Path) -> pd.DataFrame:
    """A table CSV as written by ``aggregate``: names stay text (a model called ``NA`` or ``1`` is
    that name, not a missing value or a number); an empty file (no ok runs) is an empty frame."""
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    names = [c for c in ID_COLUMNS if c in df.columns]
    if names:
        df[names] = pd.read_csv(path, usecols=names, dtype=str, keep_default_na=False)[names]
    return df


def no_data(title: str, why: str) -> Figure:
    """A figure that says the plot has nothing to show, and why."""
    fig, ax = plt.subplots(figsize=(7, 2.2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"no data: {why}", ha="center", va="center", wrap=True, fontsize=11)
    fig.suptitle(title)
    return fig


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
    if scaling.empty or "throughput" not in scaling:
        return pd.DataFrame(columns=["model", "hardware", "strategy", "world_size", "throughput", "series"])
    scaling = scaling.assign(**{c: scaling[c].astype(str) for c in ("model", "hardware", "strategy")})
    one_hw = scaling["hardware"].nunique() == 1
    return scaling.assign(series=scaling["strategy"] if one_hw else scaling["strategy"] + " @ " + scaling["hardware"])


def _rows_with(data: pd.DataFrame, y: str) -> pd.DataFrame:
    """The rows with a finite ``y`` (a configuration without a baseline has no efficiency)."""
    if y not in data:
        return data.iloc[0:0]
    return data[pd.to_numeric(data[y], errors="coerce").replace([float("inf"), -float("inf")], pd.NA).notna()]


def _line_plot(data: pd.DataFrame, y: str) -> sns.FacetGrid:
    height = max(3.4, 0.25 * data["series"].nunique())  # room for the legend beside the panels
    g = sns.relplot(
        data=data, x="world_size", y=y, col="model", hue="series", kind="line", marker="o",
        facet_kws={"sharey": False}, height=height,
    )  # fmt: skip
    g.set_titles("{col_name}")
    for ax in g.axes.flat:
        ax.set_xticks(sorted(int(n) for n in data["world_size"].unique()))
    return g


def _throughput(data: pd.DataFrame) -> Figure:
    title = "Throughput vs world size (dashed: ideal scaling from the ws-1 baseline)"
    rows = _rows_with(data, "throughput")
    if rows.empty:
        return no_data(title, NO_OK_RUNS)
    g = _line_plot(rows, "throughput")
    g.map_dataframe(_ideal)
    g.set_axis_labels("world size (ranks)", "throughput (samples/s)")
    g.figure.suptitle(title, y=1.02, x=0.4)
    return g.figure


def _efficiency(data: pd.DataFrame) -> Figure:
    title = "Scaling efficiency vs world size (1.0 = ideal)"
    rows = _rows_with(data, "efficiency")
    if rows.empty:
        return no_data(title, NO_OK_RUNS if data.empty else NO_BASELINE)
    g = _line_plot(rows, "efficiency")
    g.refline(y=1.0, color="0.4", lw=1)
    g.set_axis_labels("world size (ranks)", "scaling efficiency")
    g.figure.suptitle(title, y=1.02, x=0.4)
    return g.figure


def _bars(frame: pd.DataFrame, x: str, hue: str, hue_order: list[str], xlabel: str, title: str) -> Figure:
    """Horizontal bars: one row per series, one bar per ``hue`` value, one panel per model."""
    order = sorted(frame["series"].unique())
    g = sns.catplot(
        data=frame, y="series", x=x, hue=hue, col="model", kind="bar", order=order, hue_order=hue_order,
        sharex=False, height=max(3.4, 0.3 * len(order)), aspect=1.3,
    )  # fmt: skip
    g.set_axis_labels(xlabel, "")
    g.set_titles("{col_name}")
    g.figure.suptitle(title, y=1.02)
    return g.figure


def _strategies(data: pd.DataFrame) -> Figure:
    """Strategies side by side: one bar per strategy and world size."""
    title = "Strategies side by side: throughput by world size"
    rows = _rows_with(data, "throughput")
    if rows.empty:
        return no_data(title, NO_OK_RUNS)
    world_sizes = sorted(int(n) for n in rows["world_size"].unique())
    return _bars(
        rows.assign(ranks=rows["world_size"].astype(int).astype(str)), "throughput", "ranks",
        [str(n) for n in world_sizes], "throughput (samples/s)", title,
    )  # fmt: skip


def _memory_frame(data: pd.DataFrame) -> pd.DataFrame:
    """Model state per rank, measured and estimated (MiB), at each model's largest world size,
    with the unsharded ``single`` run beside it as the reference (empty: no figures)."""
    cols = ["model_state_bytes", "model_state_bytes_est"]
    if data.empty or not all(c in data for c in cols):
        return pd.DataFrame(columns=["model", "series", "figure", "MiB"])
    largest = data["world_size"] == data.groupby("model")["world_size"].transform("max")
    top = data[largest | (data["strategy"] == "single")]
    long = top.melt(id_vars=["model", "series"], value_vars=cols, var_name="figure", value_name="bytes")
    long["figure"] = long["figure"].map({"model_state_bytes": "measured", "model_state_bytes_est": "estimate"})
    long["bytes"] = pd.to_numeric(long["bytes"], errors="coerce")
    return long.assign(MiB=long["bytes"] / 2**20).dropna(subset=["MiB"])


def _memory(data: pd.DataFrame) -> Figure:
    """Model state (parameters + gradients + optimizer state) of the rank holding the most."""
    title = "Model state per rank (largest world size; single for reference): measured vs estimate"
    frame = _memory_frame(data)
    if frame.empty:
        return no_data(title, NO_OK_RUNS if data.empty else NO_MEMORY)
    figures = [h for h in ("measured", "estimate") if h in set(frame["figure"])]
    return _bars(frame, "MiB", "figure", figures, "model state per rank (MiB)", title)


_DRAW = {"throughput": _throughput, "efficiency": _efficiency, "strategies": _strategies, "memory": _memory}


def _draw(name: str, data: pd.DataFrame) -> Figure:
    """Plot ``name``; a plot that cannot be drawn still gives its file, saying why (the rule's
    log has the traceback), so one bad plot never costs the study its report."""
    try:
        return _DRAW[name](data)
    except Exception as e:
        traceback.print_exc()
        plt.close("all")
        return no_data(name, f"could not draw this plot: {type(e).__name__}: {e}")


def plot_scaling(scaling: pd.DataFrame, outputs: Iterable[str | Path]) -> list[Path]:
    """Draw each plot named by an output file (``<plot>.<format>``, :data:`benchbench.layout.PLOTS`);
    every file is written, a plot with nothing to show as a "no data: <why>" figure."""
    sns.set_theme(style="whitegrid", context="notebook", rc={"svg.fonttype": "none"})  # SVG text stays text
    data = _series(scaling)
    written: list[Path] = []
    for name, paths in _by_plot(outputs).items():
        written += _save(_draw(name, data), paths)
    return written
