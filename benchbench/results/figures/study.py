"""The study's figures, drawn from scaling.csv (``benchbench plot``): one per name of
:data:`benchbench.spec.paths.PLOTS`, each with a one-line caption
(:data:`benchbench.results.figures.captions.CAPTIONS`) saying what to look for, one colour per
strategy in all of them (:func:`benchbench.results.figures.palette.strategy_colour`), about 1000 px
wide with fonts of 10 pt or more. A figure whose data the study lacks is still written, as a
"no data: <why>" figure, and ``figures.json`` says which figures have data (:func:`plot_scaling`)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatter, NullLocator

from benchbench.protocol.record import atomic_write_text
from benchbench.results.figures.captions import CAPTIONS, TITLES
from benchbench.results.figures.draw import (
    WIDTH_IN,
    drawing_failed,
    no_data,
    numbers,
    panel_grid,
    rows_with,
    save,
    titled,
    use_theme,
)
from benchbench.results.figures.palette import strategy_colour
from benchbench.spec.paths import PLOT_FORMATS, PLOTS

NO_OK_RUNS = "no ok runs (every job failed or was infeasible; the report lists why)"
NO_MEMORY = "no memory figures (the scaling table has no model-state bytes)"
NO_BASELINE = (
    "no baseline: efficiency needs a world-size-1 run of the same model and hardware "
    "(the single strategy, or the strategy's own at 1 rank)"
)
NO_STEP_TIMES = "no step-time breakdown: it needs median step times and a world-size-1 baseline (efficiency)"
NO_PIPELINE = "no pipeline runs with a measured bubble (a pp strategy at 2 or more ranks)"
NO_COMPRESSION = (
    "no compression runs with payload bytes to collectives and a loss deviation (ddp-fp16, ddp-bf16, ddp-powersgd)"
)
NO_PEAK_MEMORY = "no peak memory per rank (peak_mem_mb) next to a throughput"
NO_CORRECT_RUNS = "no run passed the correctness gate (correct = match or lossy)"
#: The ``correct`` verdicts that pass the gate (docs/METRICS.md); a table without the column counts as correct.
CORRECT = ("match", "lossy")
MARKERS = ("o", "s", "^", "D", "v", "P")
COMPRESSION_WORDS = ("fp16", "bf16", "powersgd")
IDEAL_PART, OTHER_PART = "ideal (T₁/N)", "other scaling loss"
COMPONENTS = {IDEAL_PART: "#4c72b0", "exposed comm": "#dd8452", "bubble": "#c44e52", OTHER_PART: "#b0b0b0"}
_SCHEDULES = {
    "Schedule1F1B": "1f1b",
    "ScheduleGPipe": "gpipe",
    "ScheduleInterleaved1F1B": "interleaved",
    "ScheduleZBVZeroBubble": "zbv",
    "ScheduleInterleavedZeroBubble": "izb",
    "ScheduleDualPipeV": "dualpipev",
}
_PIPELINE = re.compile(r"pipeline\((\w+), stages=(\d+),.*?micro-batches=(\d+)\)")


def _by_plot(outputs: Iterable[str | Path]) -> dict[str, list[Path]]:
    """Output files grouped by plot name (the stem); each must be a known plot and format."""
    wanted: dict[str, list[Path]] = {}
    for p in map(Path, outputs):
        if p.stem not in PLOTS or p.suffix.lstrip(".") not in PLOT_FORMATS:
            raise ValueError(f"cannot draw {p}: plots are {PLOTS}, formats {PLOT_FORMATS}")
        wanted.setdefault(p.stem, []).append(p)
    return wanted


# ---------------------------------------------------------------------------------------------
# The table, made ready to draw


def _series(scaling: pd.DataFrame) -> pd.DataFrame:
    """The scaling table with a ``series`` label per line (strategy, plus hardware when several),
    a ``panel`` per model (plus hardware when several) and a ``marker`` per hardware."""
    if scaling.empty or "throughput" not in scaling:
        return pd.DataFrame(columns=["model", "hardware", "strategy", "world_size", "throughput", "series"])
    scaling = scaling.assign(**{c: scaling[c].astype(str) for c in ("model", "hardware", "strategy")})
    hardware = sorted(scaling["hardware"].unique())
    marker = scaling["hardware"].map({h: MARKERS[i % len(MARKERS)] for i, h in enumerate(hardware)})
    if len(hardware) == 1:
        return scaling.assign(series=scaling["strategy"], panel=scaling["model"], marker=marker)
    at = " @ " + scaling["hardware"]
    return scaling.assign(series=scaling["strategy"] + at, panel=scaling["model"] + at, marker=marker)


def _correct(data: pd.DataFrame) -> pd.Series:
    """Whether each row passed the correctness gate (``correct`` in :data:`CORRECT`; all do without it)."""
    if "correct" not in data:
        return pd.Series(True, index=data.index)
    return data["correct"].astype(str).isin(CORRECT)


def _at_largest_world_size(data: pd.DataFrame) -> pd.DataFrame:
    return data[data["world_size"] == data.groupby("panel")["world_size"].transform("max")]


def _pipeline(applied: object) -> tuple[str, int, int] | None:
    """(schedule, stages, micro-batches) of an ``applied`` composition with a pipeline step."""
    hit = _PIPELINE.search(str(applied))
    if not hit:
        return None
    name = hit.group(1)
    return _SCHEDULES.get(name, name.removeprefix("Schedule").lower()), int(hit.group(2)), int(hit.group(3))


def plan_label(row: pd.Series) -> str:
    """A configuration's plan in a few characters: ``dp2·tp2·pp2 1f1b m8`` (dimensions above 1,
    the pipeline schedule and micro-batches where the composition had a pipeline)."""
    dims = [f"{d}{int(v)}" for d in ("dp", "tp", "pp") if not math.isnan(v := _float(row.get(d))) and v > 1]
    ws = int(_float(row.get("world_size"), 1))
    label = "·".join(dims) or ("1 rank" if ws == 1 else f"{ws} ranks")
    pipe = _pipeline(row.get("applied", ""))
    return f"{label} {pipe[0]} m{pipe[2]}" if pipe else label


def _float(value: object, default: float = math.nan) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def pareto_front(points: pd.DataFrame, x: str = "peak_mem_mb", y: str = "throughput") -> pd.DataFrame:
    """The points no other point beats on both (smaller ``x`` and larger ``y``, one strictly),
    sorted by ``x``; points with equal ``x`` and ``y`` are all kept out but the first."""
    ordered = points.assign(_x=numbers(points, x), _y=numbers(points, y)).dropna(subset=["_x", "_y"])
    ordered = ordered.sort_values(["_x", "_y"], ascending=[True, False], kind="stable")
    keep, best = [], -math.inf
    for label, value in zip(ordered.index, ordered["_y"], strict=True):
        if value > best:
            keep.append(label)
            best = value
    return ordered.loc[keep].drop(columns=["_x", "_y"])


# ---------------------------------------------------------------------------------------------
# Drawing helpers


def _legend(fig: Figure, data: pd.DataFrame, extra: list | None = None) -> None:
    """The strategies' colours (and hardware markers when several) below the panels."""
    handles = [
        Line2D([], [], color=strategy_colour(s), marker="o", lw=2, label=s) for s in sorted(set(data["strategy"]))
    ]
    if data["marker"].nunique() > 1:
        pairs = sorted(set(zip(data["hardware"], data["marker"], strict=True)))
        handles += [Line2D([], [], color="0.3", marker=m, ls="", label=h) for h, m in pairs]
    handles += extra or []
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 5), frameon=False)


def _world_size_axis(ax: Axes, ws: Iterable[object]) -> None:
    """A log-2 x axis with a tick at each world size."""
    ticks = sorted({int(n) for n in ws})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("world size (ranks)")


def _plain_numbers(axis: Axis) -> None:
    """A log axis labelled 200, 300, 400 (not 2x10^2) where it spans under two decades."""
    for set_formatter in (axis.set_major_formatter, axis.set_minor_formatter):
        set_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _errors(group: pd.DataFrame, y: str) -> np.ndarray | None:
    """The 95 % interval around ``y`` as error-bar lengths (0 where the table has none)."""
    low, high = numbers(group, f"{y}_ci_low"), numbers(group, f"{y}_ci_high")
    if low.isna().all() or high.isna().all():
        return None
    v = numbers(group, y)
    return np.vstack([(v - low).clip(lower=0).fillna(0), (high - v).clip(lower=0).fillna(0)])


def _lines(ax: Axes, part: pd.DataFrame, y: str) -> None:
    """One line per series in strategy colour, with error bars where the table has intervals."""
    for _, g in part.groupby("series", sort=True):
        g = g.sort_values("world_size")
        colour = strategy_colour(g["strategy"].iloc[0])
        ax.errorbar(
            g["world_size"].astype(float),
            numbers(g, y),
            yerr=_errors(g, y),
            color=colour,
            marker=g["marker"].iloc[0],
            lw=1.8,
            ms=6,
            capsize=3,
        )


def _ideal(ax: Axes, part: pd.DataFrame) -> None:
    """Linear scaling from the 1-rank ``single`` run (else each line's own baseline)."""
    single = part[(part["strategy"] == "single") & (part["world_size"].astype(int) == 1)]
    base = numbers(single, "throughput").dropna()
    if base.empty:
        base = (numbers(part, "throughput") / numbers(part, "speedup")).dropna()
    if base.empty:
        return
    ws = sorted(float(n) for n in part["world_size"].unique())
    ax.plot(ws, [base.iloc[0] * n for n in ws], ls="--", color="0.4", lw=1.2)


IDEAL = Line2D([], [], ls="--", color="0.4", label="ideal (linear from 1 rank)")


# ---------------------------------------------------------------------------------------------
# The figures: each returns its figure, or why it has no data


def _throughput(data: pd.DataFrame) -> Figure | str:
    rows = rows_with(data, "throughput")
    if rows.empty:
        return NO_OK_RUNS
    fig, panels = panel_grid(sorted(rows["panel"].unique()))
    for panel, ax in panels.items():
        part = rows[rows["panel"] == panel]
        _lines(ax, part, "throughput")
        _ideal(ax, part)
        ax.set_yscale("log")
        _plain_numbers(ax.yaxis)
        _world_size_axis(ax, part["world_size"])
        ax.set(title=panel, ylabel="throughput (samples/s)")
    _legend(fig, rows, [IDEAL])
    return fig


def _efficiency(data: pd.DataFrame) -> Figure | str:
    rows = rows_with(data, "efficiency")
    if rows.empty:
        return NO_BASELINE
    fig, panels = panel_grid(sorted(rows["panel"].unique()))
    for panel, ax in panels.items():
        part = rows[rows["panel"] == panel]
        _lines(ax, part, "efficiency")
        ax.axhline(1.0, color="0.4", lw=1.2, ls="--")
        _world_size_axis(ax, part["world_size"])
        ax.set(title=panel, ylabel="scaling efficiency")
        ax.set_ylim(bottom=0)
    _legend(fig, rows)
    return fig


def _best_frame(data: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The fastest correct row (:func:`_correct`) per panel and world size, with ``value`` (MFU where
    every best row has one, else throughput / the panel's best) and the value's name."""
    rows = rows_with(data, "throughput").assign(_thr=lambda f: numbers(f, "throughput"))
    rows = rows[_correct(rows)]
    best = rows.loc[rows.groupby(["panel", "world_size"])["_thr"].idxmax()]
    mfu = numbers(best, "mfu")
    if not best.empty and mfu.notna().all():
        return best.assign(value=mfu), "MFU"
    return best.assign(value=best["_thr"] / best.groupby("panel")["_thr"].transform("max")), "throughput / row's best"


def _best(data: pd.DataFrame) -> Figure | str:
    best, what = _best_frame(data)
    if best.empty:
        return NO_CORRECT_RUNS if not rows_with(data, "throughput").empty else NO_OK_RUNS
    panels, ws = sorted(best["panel"].unique()), sorted(int(n) for n in best["world_size"].unique())
    grid = np.full((len(panels), len(ws)), np.nan)
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 0.9 * len(panels) + 1.6))
    for _, row in best.iterrows():
        i, j = panels.index(row["panel"]), ws.index(int(row["world_size"]))
        grid[i, j] = row["value"]
        text = f"{row['strategy']}\n{plan_label(row)}\n{row['value']:.2f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=10, color="white" if row["value"] < 0.6 else "black")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=max(1.0, np.nanmax(grid)), aspect="auto")
    ax.set_xticks(range(len(ws)), [str(n) for n in ws])
    ax.set_yticks(range(len(panels)), panels)
    ax.set_xlabel("world size (ranks)")
    ax.grid(False)
    fig.colorbar(image, ax=ax, label=what, fraction=0.04)
    return fig


def _breakdown_frame(data: pd.DataFrame) -> pd.DataFrame:
    """Step-time components (ms) at each panel's largest world size (see :data:`CAPTIONS`)."""
    rows = rows_with(data, "step_time_median_s", "efficiency")
    if rows.empty:
        return rows
    top = _at_largest_world_size(rows)
    step = numbers(top, "step_time_median_s")
    comm = numbers(top, "exposed_comm_s").fillna(numbers(top, "exposed_comm_fraction") * step).fillna(0)
    bubble = (numbers(top, "bubble_fraction_measured") * step).fillna(0)
    ideal = (step * numbers(top, "efficiency")).clip(lower=0, upper=step)  # T(1)/N, not measured compute
    comm = comm.clip(lower=0, upper=step - ideal)  # measured on other steps: capped so the bar is the step
    bubble = bubble.clip(lower=0, upper=step - ideal - comm)
    other = step - ideal - comm - bubble
    parts = {IDEAL_PART: ideal, "exposed comm": comm, "bubble": bubble, OTHER_PART: other}
    return top.assign(**{k: 1e3 * v for k, v in parts.items()}, step_ms=1e3 * step)


def _breakdown(data: pd.DataFrame) -> Figure | str:
    frame = _breakdown_frame(data)
    if frame.empty:
        return NO_STEP_TIMES
    fig, panels = panel_grid(sorted(frame["panel"].unique()), height=max(3.0, 0.45 * frame["series"].nunique() + 1.2))
    for panel, ax in panels.items():
        part = frame[frame["panel"] == panel].sort_values("series")
        y, left = np.arange(len(part)), np.zeros(len(part))
        for name, colour in COMPONENTS.items():
            ax.barh(y, part[name], left=left, color=colour, height=0.7)
            left += part[name].to_numpy()
        ax.set_yticks(y, list(part["series"]))
        for tick, strategy in zip(ax.get_yticklabels(), part["strategy"], strict=True):
            tick.set_color(strategy_colour(strategy))
        ax.set(title=f"{panel} (ws {int(part['world_size'].max())})", xlabel="step time (ms)")
    handles = [Patch(color=c, label=n) for n, c in COMPONENTS.items()]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, frameon=False)
    return fig


def _memory_frame(data: pd.DataFrame) -> pd.DataFrame:
    """Model state per rank, measured and estimated (MiB), at each model's largest world size,
    with the unsharded ``single`` run beside it as the reference (empty: no figures)."""
    cols = ["model_state_bytes", "model_state_bytes_est"]
    if data.empty or not all(c in data for c in cols):
        return pd.DataFrame(columns=["model", "panel", "series", "strategy", "figure", "MiB"])
    largest = data["world_size"] == data.groupby("panel")["world_size"].transform("max")
    top = data[largest | (data["strategy"] == "single")]
    long = top.melt(
        id_vars=["model", "panel", "series", "strategy"], value_vars=cols, var_name="figure", value_name="bytes"
    )
    long["figure"] = long["figure"].map({"model_state_bytes": "measured", "model_state_bytes_est": "estimate"})
    long["bytes"] = pd.to_numeric(long["bytes"], errors="coerce")
    return long.assign(MiB=long["bytes"] / 2**20).dropna(subset=["MiB"])


def _memory(data: pd.DataFrame) -> Figure | str:
    frame = _memory_frame(data)
    if frame.empty:
        return NO_MEMORY
    series = sorted(frame["series"].unique())
    fig, panels = panel_grid(sorted(frame["panel"].unique()), height=max(3.0, 0.45 * len(series) + 1.2))
    for panel, ax in panels.items():
        part = frame[frame["panel"] == panel]
        names = sorted(part["series"].unique())
        for i, name in enumerate(names):
            for offset, figure in ((-0.2, "measured"), (0.2, "estimate")):
                hit = part[(part["series"] == name) & (part["figure"] == figure)]
                if not hit.empty:
                    colour = strategy_colour(hit["strategy"].iloc[0])
                    solid = figure == "measured"
                    ax.barh(
                        i + offset,
                        hit["MiB"].max(),
                        height=0.38,
                        color=colour if solid else "none",
                        edgecolor=colour,
                        hatch=None if solid else "///",
                        lw=1.2,
                    )
        ax.set_yticks(range(len(names)), names)
        ax.set(title=panel, xlabel="model state per rank (MiB)")
    handles = [
        Patch(color="0.4", label="measured"),
        Patch(facecolor="none", edgecolor="0.4", hatch="///", label="estimate"),
    ]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
    return fig


def _bubble_frame(data: pd.DataFrame) -> pd.DataFrame:
    """Pipeline rows with a measured bubble, their stages ``p`` and micro-batches ``m``."""
    rows = rows_with(data, "bubble_fraction_measured")
    if rows.empty or "applied" not in rows:
        return rows.iloc[0:0]
    pipes = rows["applied"].map(_pipeline)
    rows = rows[pipes.notna()]
    pipes = pipes[pipes.notna()]
    pp = numbers(rows, "pp")
    p = pp.where(pp > 1, pipes.map(lambda t: float(t[1])))
    bubble, theory = numbers(rows, "bubble_fraction_measured"), numbers(rows, "bubble_fraction_theoretical")
    return rows.assign(p=p.astype(int), m=pipes.map(lambda t: t[2]), bubble=bubble, theory=theory)


def _bubble_points(ax: Axes, part: pd.DataFrame) -> None:
    """Each run's measured bubble (filled) and its own schedule's theory (open, where the table has it)."""
    for _, row in part.iterrows():
        colour = strategy_colour(row["strategy"])
        ax.plot(row["m"], row["bubble"], marker=row["marker"], ms=8, ls="", color=colour)
        if not math.isnan(row["theory"]):
            ax.plot(row["m"], row["theory"], marker=row["marker"], ms=10, ls="", color=colour, mfc="none", mew=1.5)


def _bubble(data: pd.DataFrame) -> Figure | str:
    frame = _bubble_frame(data)
    if frame.empty:
        return NO_PIPELINE
    fig, panels = panel_grid(sorted(frame["panel"].unique()))
    for panel, ax in panels.items():
        part = frame[frame["panel"] == panel]
        m = np.geomspace(1, max(2 * part["m"].max(), 8), 60)
        for p in sorted(part["p"].unique()):
            ax.plot(m, (p - 1) / (m + p - 1), ls="--", color="0.4", lw=1.2)
            ax.annotate(
                f"p={p}", (m[0], (p - 1) / p), fontsize=10, color="0.3", xytext=(4, 2), textcoords="offset points"
            )
        _bubble_points(ax, part)
        ax.set_xscale("log", base=2)
        ticks = [2**k for k in range(int(math.log2(m[-1])) + 1)]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        top = min(1.0, 1.25 * max(part["bubble"].max(), (part["p"].max() - 1) / part["p"].max()))
        ax.set(title=panel, xlabel="micro-batches per step (m)", ylabel="bubble fraction", ylim=(0, top))
    _legend(fig, frame, BUBBLE_KEYS)
    return fig


BUBBLE_KEYS = [
    Line2D([], [], ls="--", color="0.4", label="GPipe/1F1B theory (p-1)/(m+p-1)"),
    Line2D([], [], ls="", marker="o", ms=9, color="0.3", mfc="none", label="theory for its schedule"),
]


def _compressed(data: pd.DataFrame) -> pd.Series:
    """Whether each row's strategy compresses gradients (``lossy``, or its name says so)."""
    lossy = data["lossy"].astype(str).str.lower() == "true" if "lossy" in data else False
    named = data["strategy"].str.lower().str.contains("|".join(COMPRESSION_WORDS))
    return named | lossy


def _compression(data: pd.DataFrame) -> Figure | str:
    rows = rows_with(data, "comm_bytes_per_step", "loss_dev")
    rows = rows[_compressed(rows) | (rows["strategy"] == "ddp")] if not rows.empty else rows
    if rows.empty or not _compressed(rows).any():
        return NO_COMPRESSION
    fig, panels = panel_grid(sorted(rows["panel"].unique()))
    for panel, ax in panels.items():
        for _, row in rows[rows["panel"] == panel].iterrows():
            x, y = _float(row["comm_bytes_per_step"]) / 2**20, _float(row["loss_dev"])
            ax.plot(x, y, marker=row["marker"], ms=8, ls="", color=strategy_colour(row["strategy"]))
            ax.annotate(f"ws{int(row['world_size'])}", (x, y), fontsize=10, xytext=(4, 3), textcoords="offset points")
        ax.set_xscale("log")
        _plain_numbers(ax.xaxis)
        ax.set(title=panel, xlabel="payload bytes to collectives per rank and step (MiB)", ylabel="loss deviation")
    _legend(fig, rows)
    return fig


def _pareto(data: pd.DataFrame) -> Figure | str:
    rows = rows_with(data, "throughput", "peak_mem_mb")
    if rows.empty:
        return NO_PEAK_MEMORY
    fig, panels = panel_grid(sorted(rows["panel"].unique()))
    for panel, ax in panels.items():
        part = rows[rows["panel"] == panel]
        correct = _correct(part)
        for (_, row), ok in zip(part.iterrows(), correct, strict=True):
            x, y = _float(row["peak_mem_mb"]), _float(row["throughput"])
            look = {"color": strategy_colour(row["strategy"])} if ok else {"color": "0.6", "mfc": "none"}
            ax.plot(x, y, marker=row["marker"], ms=8, ls="", **look)
            ax.annotate(str(int(row["world_size"])), (x, y), fontsize=10, xytext=(4, 3), textcoords="offset points")
        front = pareto_front(part[correct])  # a run that failed the gate is no candidate
        x, y = front["peak_mem_mb"].astype(float), front["throughput"].astype(float)
        ax.plot(x, y, "k-", lw=1.3, drawstyle="steps-post", marker="o", ms=13, mfc="none")
        ax.set(title=panel, xlabel="peak memory per rank (MiB)", ylabel="throughput (samples/s)")
    failed = Line2D([], [], ls="", marker="o", ms=8, color="0.6", mfc="none", label="failed the correctness gate")
    _legend(fig, rows, [Line2D([], [], color="k", label="Pareto front (correct runs)"), failed])
    return fig


_DRAW = {
    "throughput": _throughput,
    "efficiency": _efficiency,
    "best": _best,
    "breakdown": _breakdown,
    "memory": _memory,
    "bubble": _bubble,
    "compression": _compression,
    "pareto": _pareto,
}


def _draw(name: str, data: pd.DataFrame) -> tuple[Figure, str]:
    """Plot ``name`` and why it has no data ("" when it has); a plot that cannot be drawn still
    gives its file, saying why (the rule's log has the traceback), so one bad plot never costs the
    study its report."""
    try:
        drawn = NO_OK_RUNS if data.empty else _DRAW[name](data)
    except Exception as e:
        drawn = drawing_failed(e)
    return titled(name, drawn), drawn if isinstance(drawn, str) else ""


def _draw_and_save(name: str, data: pd.DataFrame, paths: list[Path]) -> tuple[list[Path], str]:
    """Plot ``name`` into ``paths`` (none: drawn only), and why it has no data; a plot that fails
    while saving (e.g. in text layout) is saved as a "could not draw" figure instead."""
    fig, why = _draw(name, data)
    if not paths:
        plt.close(fig)
        return [], why
    try:
        return save(fig, paths), why
    except Exception as e:
        why = drawing_failed(e)
        return save(no_data(TITLES[name], why), paths), why


def plot_scaling(scaling: pd.DataFrame, outputs: Iterable[str | Path], index: str | Path | None = None) -> list[Path]:
    """Draw each plot named by an output file (``<plot>.<format>``, :data:`benchbench.spec.paths.PLOTS`);
    every file is written, a plot with nothing to show as a "no data: <why>" figure. With ``index``,
    every plot is drawn and ``index`` (``figures.json``) lists them in ``PLOTS`` order:
    ``[{"name", "caption", "has_data", "why"}]`` (``why`` empty when ``has_data``)."""
    use_theme()
    data = _series(scaling)
    wanted = _by_plot(outputs)
    written: list[Path] = []
    entries = []
    for name in PLOTS if index else [n for n in PLOTS if n in wanted]:
        paths, why = _draw_and_save(name, data, wanted.get(name, []))
        written += paths
        entries.append({"name": name, "caption": CAPTIONS[name], "has_data": not why, "why": why})
    if index:
        atomic_write_text(index, json.dumps(entries, indent=1, ensure_ascii=False) + "\n")
    return written
