"""The study's figures (matplotlib), drawn from scaling.csv: one per name of
:data:`benchbench.spec.paths.PLOTS`, each with a one-line caption (:data:`CAPTIONS`) saying what to look
for, one colour per strategy in all of them (:func:`benchbench.results.palette.strategy_colour`), about
1000 px wide with fonts of 10 pt or more. A figure whose data the study lacks is still written, as a
"no data: <why>" figure, and ``figures.json`` says which figures have data (:func:`plot_scaling`)."""

from __future__ import annotations

import json
import math
import re
import traceback
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogFormatter, LogLocator, NullFormatter, NullLocator

from benchbench.spec.paths import COSTMODEL_PLOTS, PLOT_FORMATS, PLOTS
from benchbench.results.palette import strategy_colour
from benchbench.protocol.record import atomic_write_text

#: The scaling table's name columns (text, whatever they look like).
ID_COLUMNS = ("model", "hardware", "strategy", "series", "baseline")
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

#: One line per figure: what it shows and what to look for (the report and Snakemake's report
#: print it under the figure; workflow/report/<name>.rst holds the same text).
CAPTIONS: dict[str, str] = {
    "throughput": "Throughput against world size on log-log axes, one line per strategy (bars: 95 % interval "
    "over repeats); the dashed line is ideal linear scaling from the 1-rank run: the further below it, "
    "the worse the strategy scales.",
    "efficiency": "Scaling efficiency (speedup / world size) against world size: 1.0 is ideal; "
    "a line that falls fast marks a strategy whose overhead grows with the ranks.",
    "best": "The fastest correct configuration (correct = match or lossy) per model and world size, "
    "labelled with its plan (dp·tp·pp, schedule, "
    "micro-batches m); the colour is MFU where measured, else throughput relative to the row's best.",
    "breakdown": "Median step time at each model's largest world size split into ideal (T1/N = step time x "
    "efficiency: the 1-rank step shared perfectly, not measured compute), exposed communication, pipeline "
    "bubble (each capped at what is left of the step), and other scaling loss = step time minus those three "
    "(synchronisation, imbalance, overhead, compute that does not shrink with the ranks).",
    "memory": "Model state (parameters, gradients, optimizer state) of the rank holding the most, measured "
    "(solid) next to the analytic estimate (hatched); sharding strategies should sit well below single.",
    "bubble": "Measured pipeline bubble against micro-batches per step; open markers: each run's theory for "
    "its own schedule; dashed: GPipe/1F1B theory (p-1)/(m+p-1) for p stages. Points above their own theory "
    "marker lose time beyond the schedule's.",
    "compression": "Payload bytes each rank hands to collectives per step (not bus bytes) against the largest "
    "loss deviation from the single-process run: compression should move left without moving far up.",
    "pareto": "Throughput against peak memory per rank, every configuration a point (label: world size; "
    "hollow grey: failed the correctness gate); the black line is the Pareto front of the correct ones: "
    "no correct configuration is both faster and smaller than one on it.",
    "busbw": "Calibration: bus bandwidth (nccl-tests busbw = size / time x the collective's bus factor) against "
    "message size on log-log axes, one line per collective and group size, per measured hardware profile: "
    "small messages are latency-bound (rising), large ones approach the link's bus bandwidth (flat).",
    "predicted": "Predicted throughput against world size up to 4,096 ranks on log-log axes, one panel per hardware "
    "profile (its measured calibration, or its specs: 'from spec'; the title says from which world size the "
    "prediction is extrapolated beyond the calibrated group sizes), one line per strategy (colour) and model (line "
    "style); the global batch is the study's at its own world sizes and the model's batch x world size beyond. Plans "
    "the plan rules refuse are absent; plans predicted not to fit in memory are grey crosses.",
}


def caption_rst(name: str) -> str:
    """The caption file of figure ``name`` for Snakemake's report (workflow/report/<name>.rst)."""
    return f"{CAPTIONS[name]}\n"


TITLES: dict[str, str] = {
    "throughput": "Throughput vs world size (log-log; dashed: ideal)",
    "efficiency": "Scaling efficiency vs world size (1.0 = ideal)",
    "best": "Best configuration per model and world size",
    "breakdown": "Step-time breakdown (largest world size)",
    "memory": "Model state per rank: measured vs estimate",
    "bubble": "Pipeline bubble vs micro-batches",
    "compression": "Gradient compression: payload bytes to collectives per step vs loss deviation",
    "pareto": "Throughput vs peak memory per rank (Pareto front)",
    "busbw": "Collective bus bandwidth vs message size (calibration)",
    "predicted": "Predicted throughput vs world size (cost model)",
}
WIDTH_IN = 10.4  # ≈ 1000 px in a browser (an SVG point is 4/3 px)
PNG_DPI = 96
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
_THEME = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 13,
    "svg.fonttype": "none",  # SVG text stays text
    "axes.grid": True,
    "grid.color": "0.88",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "text.parse_math": False,
    "text.usetex": False,  # names print literally: a model "m$x$" is not maths
    "svg.hashsalt": "benchbench",  # reproducible SVG ids
}


def _save(fig: Figure, paths: list[Path]) -> list[Path]:
    for path in paths:
        fmt = path.suffix.lstrip(".")
        tmp = path.with_name(f".{path.name}.tmp")
        meta = {"Date": None} if fmt == "svg" else {}  # reproducible files: no time stamp
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fig.savefig(tmp, format=fmt, dpi=PNG_DPI, bbox_inches="tight", metadata=meta)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
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
    fig, ax = plt.subplots(figsize=(WIDTH_IN * 0.7, 2.2))
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


def _numbers(data: pd.DataFrame, column: str) -> pd.Series:
    """``column`` as floats (NaN where missing, not a number or infinite; all NaN without it)."""
    if column not in data:
        return pd.Series(np.nan, index=data.index, dtype=float)
    return pd.to_numeric(data[column], errors="coerce").replace([np.inf, -np.inf], np.nan).astype(float)


def _rows_with(data: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The rows with a finite number in each of ``columns``."""
    keep = pd.Series(True, index=data.index)
    for c in columns:
        keep &= _numbers(data, c).notna()
    return data[keep]


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
    ordered = points.assign(_x=_numbers(points, x), _y=_numbers(points, y)).dropna(subset=["_x", "_y"])
    ordered = ordered.sort_values(["_x", "_y"], ascending=[True, False], kind="stable")
    keep, best = [], -math.inf
    for label, value in zip(ordered.index, ordered["_y"], strict=True):
        if value > best:
            keep.append(label)
            best = value
    return ordered.loc[keep].drop(columns=["_x", "_y"])


# ---------------------------------------------------------------------------------------------
# Drawing helpers


def _panels(keys: list[str], height: float = 3.6) -> tuple[Figure, dict[str, Axes]]:
    """One panel per key, three to a row, the figure :data:`WIDTH_IN` wide."""
    n = max(len(keys), 1)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH_IN, height * rows), squeeze=False)
    for ax in axes.flat[len(keys) :]:
        ax.axis("off")
    return fig, dict(zip(keys, axes.flat, strict=False))


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
    low, high = _numbers(group, f"{y}_ci_low"), _numbers(group, f"{y}_ci_high")
    if low.isna().all() or high.isna().all():
        return None
    v = _numbers(group, y)
    return np.vstack([(v - low).clip(lower=0).fillna(0), (high - v).clip(lower=0).fillna(0)])


def _lines(ax: Axes, part: pd.DataFrame, y: str) -> None:
    """One line per series in strategy colour, with error bars where the table has intervals."""
    for _, g in part.groupby("series", sort=True):
        g = g.sort_values("world_size")
        colour = strategy_colour(g["strategy"].iloc[0])
        ax.errorbar(
            g["world_size"].astype(float),
            _numbers(g, y),
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
    base = _numbers(single, "throughput").dropna()
    if base.empty:
        base = (_numbers(part, "throughput") / _numbers(part, "speedup")).dropna()
    if base.empty:
        return
    ws = sorted(float(n) for n in part["world_size"].unique())
    ax.plot(ws, [base.iloc[0] * n for n in ws], ls="--", color="0.4", lw=1.2)


IDEAL = Line2D([], [], ls="--", color="0.4", label="ideal (linear from 1 rank)")


# ---------------------------------------------------------------------------------------------
# The figures: each returns its figure, or why it has no data


def _throughput(data: pd.DataFrame) -> Figure | str:
    rows = _rows_with(data, "throughput")
    if rows.empty:
        return NO_OK_RUNS
    fig, panels = _panels(sorted(rows["panel"].unique()))
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
    rows = _rows_with(data, "efficiency")
    if rows.empty:
        return NO_BASELINE
    fig, panels = _panels(sorted(rows["panel"].unique()))
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
    rows = _rows_with(data, "throughput").assign(_thr=lambda f: _numbers(f, "throughput"))
    rows = rows[_correct(rows)]
    best = rows.loc[rows.groupby(["panel", "world_size"])["_thr"].idxmax()]
    mfu = _numbers(best, "mfu")
    if not best.empty and mfu.notna().all():
        return best.assign(value=mfu), "MFU"
    return best.assign(value=best["_thr"] / best.groupby("panel")["_thr"].transform("max")), "throughput / row's best"


def _best(data: pd.DataFrame) -> Figure | str:
    best, what = _best_frame(data)
    if best.empty:
        return NO_CORRECT_RUNS if not _rows_with(data, "throughput").empty else NO_OK_RUNS
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
    rows = _rows_with(data, "step_time_median_s", "efficiency")
    if rows.empty:
        return rows
    top = _at_largest_world_size(rows)
    step = _numbers(top, "step_time_median_s")
    comm = _numbers(top, "exposed_comm_s").fillna(_numbers(top, "exposed_comm_fraction") * step).fillna(0)
    bubble = (_numbers(top, "bubble_fraction_measured") * step).fillna(0)
    ideal = (step * _numbers(top, "efficiency")).clip(lower=0, upper=step)  # T(1)/N, not measured compute
    comm = comm.clip(lower=0, upper=step - ideal)  # measured on other steps: capped so the bar is the step
    bubble = bubble.clip(lower=0, upper=step - ideal - comm)
    other = step - ideal - comm - bubble
    parts = {IDEAL_PART: ideal, "exposed comm": comm, "bubble": bubble, OTHER_PART: other}
    return top.assign(**{k: 1e3 * v for k, v in parts.items()}, step_ms=1e3 * step)


def _breakdown(data: pd.DataFrame) -> Figure | str:
    frame = _breakdown_frame(data)
    if frame.empty:
        return NO_STEP_TIMES
    fig, panels = _panels(sorted(frame["panel"].unique()), height=max(3.0, 0.45 * frame["series"].nunique() + 1.2))
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
    fig, panels = _panels(sorted(frame["panel"].unique()), height=max(3.0, 0.45 * len(series) + 1.2))
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
    rows = _rows_with(data, "bubble_fraction_measured")
    if rows.empty or "applied" not in rows:
        return rows.iloc[0:0]
    pipes = rows["applied"].map(_pipeline)
    rows = rows[pipes.notna()]
    pipes = pipes[pipes.notna()]
    pp = _numbers(rows, "pp")
    p = pp.where(pp > 1, pipes.map(lambda t: float(t[1])))
    bubble, theory = _numbers(rows, "bubble_fraction_measured"), _numbers(rows, "bubble_fraction_theoretical")
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
    fig, panels = _panels(sorted(frame["panel"].unique()))
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
    rows = _rows_with(data, "comm_bytes_per_step", "loss_dev")
    rows = rows[_compressed(rows) | (rows["strategy"] == "ddp")] if not rows.empty else rows
    if rows.empty or not _compressed(rows).any():
        return NO_COMPRESSION
    fig, panels = _panels(sorted(rows["panel"].unique()))
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
    rows = _rows_with(data, "throughput", "peak_mem_mb")
    if rows.empty:
        return NO_PEAK_MEMORY
    fig, panels = _panels(sorted(rows["panel"].unique()))
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
        traceback.print_exc()
        plt.close("all")
        drawn = f"could not draw this plot: {type(e).__name__}: {e}"
    if isinstance(drawn, str):
        return no_data(TITLES[name], drawn), drawn
    drawn.suptitle(TITLES[name], y=1.02)
    return drawn, ""


def _draw_and_save(name: str, data: pd.DataFrame, paths: list[Path]) -> tuple[list[Path], str]:
    """Plot ``name`` into ``paths`` (none: drawn only), and why it has no data; a plot that fails
    while saving (e.g. in text layout) is saved as a "could not draw" figure instead."""
    fig, why = _draw(name, data)
    if not paths:
        plt.close(fig)
        return [], why
    try:
        return _save(fig, paths), why
    except Exception as e:
        traceback.print_exc()
        plt.close("all")
        why = f"could not draw this plot: {type(e).__name__}: {e}"
        return _save(no_data(TITLES[name], why), paths), why


def plot_scaling(scaling: pd.DataFrame, outputs: Iterable[str | Path], index: str | Path | None = None) -> list[Path]:
    """Draw each plot named by an output file (``<plot>.<format>``, :data:`benchbench.spec.paths.PLOTS`);
    every file is written, a plot with nothing to show as a "no data: <why>" figure. With ``index``,
    every plot is drawn and ``index`` (``figures.json``) lists them in ``PLOTS`` order:
    ``[{"name", "caption", "has_data", "why"}]`` (``why`` empty when ``has_data``)."""
    plt.rcParams.update(_THEME)
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


# ---------------------------------------------------------------------------------------------
# The cost model's figures: from the calibrations and predictions.csv (benchbench plot-costmodel)

NO_CALIBRATION = "no measured calibration with a collective sweep (benchbench calibrate)"
NO_PREDICTIONS = "no predictions (predictions.csv is empty: no usable calibration or cost model)"
_COLLECTIVE_COLOURS = {
    "all_reduce": "#4c72b0",
    "all_gather": "#55a868",
    "reduce_scatter": "#c44e52",
    "broadcast": "#8172b2",
    "send": "#dd8452",
}
_GROUP_STYLES = ("-", "--", ":", "-.")


def _size_label(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n:g} B"


def _log2_ticks(axis: Axis, lo: float, hi: float, step: int, label=str) -> None:
    """Ticks at every ``step``-th power of 2 from ``lo`` to ``hi``, labelled plainly (no maths text)."""
    ticks = [2.0**k for k in range(math.floor(math.log2(lo)), math.ceil(math.log2(hi)) + 1, step)]
    axis.set_ticks(ticks, [label(t) for t in ticks])
    axis.set_minor_locator(NullLocator())


def _decades(axis: Axis) -> None:
    """A log axis with a plain label at each power of ten (1e-3 … 1000 … 1e6), none between."""
    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(
        FuncFormatter(
            lambda v, _: (
                f"{v:g}" if 1e-2 <= v <= 1e4 else f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")
            )
        )
    )
    axis.set_minor_formatter(NullFormatter())


def _busbw(points: pd.DataFrame) -> Figure | str:
    """``points``: hardware, kind, group_size, payload_bytes, busbw (bytes/s)."""
    rows = _rows_with(points, "payload_bytes", "busbw")
    rows = rows[_numbers(rows, "busbw") > 0]
    if rows.empty:
        return NO_CALIBRATION
    fig, panels = _panels(sorted(rows["hardware"].unique()), height=4.2)
    styles = {n: _GROUP_STYLES[i % len(_GROUP_STYLES)] for i, n in enumerate(sorted(rows["group_size"].unique()))}
    for hardware, ax in panels.items():
        part = rows[rows["hardware"] == hardware]
        for (kind, n), g in part.groupby(["kind", "group_size"], sort=True):
            g = g.sort_values("payload_bytes")
            ax.plot(
                g["payload_bytes"],
                g["busbw"] / 1e9,
                color=_COLLECTIVE_COLOURS.get(kind, "0.3"),
                ls=styles[n],
                marker="o",
                ms=3,
                lw=1.5,
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        _log2_ticks(ax.xaxis, part["payload_bytes"].min(), part["payload_bytes"].max(), 4, _size_label)
        _decades(ax.yaxis)
        ax.set(title=hardware, xlabel="message size (nccl-tests size)", ylabel="busbw (GB/s)")
    handles = [Line2D([], [], color=c, lw=2, label=k) for k, c in _COLLECTIVE_COLOURS.items() if k in set(rows["kind"])]
    handles += [Line2D([], [], color="0.3", ls=st, label=f"{n} ranks") for n, st in styles.items()]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 5), frameon=False)
    return fig


def _fits(data: pd.DataFrame) -> pd.Series:
    """Whether each predicted plan fits in memory (True where the table does not say it does not)."""
    if "fits" not in data:
        return pd.Series(True, index=data.index)
    return ~data["fits"].astype(str).str.lower().isin(("false", "0"))


_MODEL_STYLES = ("-", "--", ":", "-.")


def _predicted_title(hardware: str, part: pd.DataFrame) -> str:
    """``hardware (sources)``, and where the cost model reached beyond its calibration (a larger
    group than measured: the Prediction's ``extrapolated``) from which world size on."""
    bits = sorted(set(part["source"].dropna().astype(str))) if "source" in part else []
    if "extrapolated" in part:
        beyond = part.loc[part["extrapolated"].astype(str).str.lower() == "true", "world_size"]
        if not beyond.empty:
            bits.append(f"extrapolated from {int(beyond.min())} ranks")
    return f"{hardware} ({'; '.join(bits)})" if bits else hardware


def _predicted(grid: pd.DataFrame) -> Figure | str:
    rows = _rows_with(grid, "samples_per_s", "world_size")
    if rows.empty:
        return NO_PREDICTIONS
    rows = rows.assign(fits_=_fits(rows))
    if "infeasible" in rows:  # refused by the plan rules: absent; refused for memory: a grey cross
        rows = rows[~(rows["infeasible"].fillna("").astype(str).ne("") & rows["fits_"])]
    styles = {m: _MODEL_STYLES[i % len(_MODEL_STYLES)] for i, m in enumerate(dict.fromkeys(rows["model"]))}
    fig, panels = _panels(list(dict.fromkeys(rows["hardware"])), height=4.2)
    fig.subplots_adjust(hspace=0.45, wspace=0.3)
    for hardware, ax in panels.items():
        part = rows[rows["hardware"] == hardware]
        for (model, strategy), g in part[part["fits_"]].groupby(["model", "strategy"], sort=True):
            g = g.sort_values("world_size")
            ax.plot(
                g["world_size"],
                g["samples_per_s"],
                color=strategy_colour(strategy),
                ls=styles[model],
                marker="o",
                ms=3,
                lw=1.6,
            )
        out = part[~part["fits_"]]
        ax.plot(out["world_size"], out["samples_per_s"], ls="", marker="x", ms=6, color="0.55")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        _log2_ticks(ax.xaxis, 1, part["world_size"].max(), 3, lambda t: f"{int(t)}")
        _decades(ax.yaxis)
        ax.set(title=_predicted_title(hardware, part), xlabel="world size (ranks)", ylabel="predicted samples/s")
    handles = [Line2D([], [], color=strategy_colour(s), lw=2, label=s) for s in sorted(set(rows["strategy"]))]
    handles += [Line2D([], [], color="0.3", ls=st, label=m) for m, st in styles.items()]
    handles.append(Line2D([], [], ls="", marker="x", color="0.55", label="does not fit in memory"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 5), frameon=False)
    return fig


def calibration_points(calibrations: Iterable[object]) -> pd.DataFrame:
    """The collective sweeps of ``calibrations`` (:class:`benchbench.costmodel.calibration.Calibration`)
    as one table: hardware, kind, group_size, payload_bytes, time_s, algbw, busbw."""
    rows = [{"hardware": c.hardware, **vars(p)} for c in calibrations for p in c.points]  # type: ignore[attr-defined]
    cols = ["hardware", "kind", "group_size", "payload_bytes", "time_s", "algbw", "busbw"]
    return pd.DataFrame(rows, columns=cols)


def plot_costmodel(points: pd.DataFrame, grid: pd.DataFrame, outputs: Iterable[str | Path]) -> list[Path]:
    """Draw the cost model's figures named by ``outputs`` (``busbw`` from the calibration sweeps'
    ``points``, ``predicted`` from predictions.csv ``grid``); one with nothing to show is a "no data"
    figure, one that cannot be drawn says so (the traceback goes to stderr)."""
    plt.rcParams.update(_THEME)
    written: list[Path] = []
    for p in map(Path, outputs):
        if p.stem not in COSTMODEL_PLOTS or p.suffix.lstrip(".") not in PLOT_FORMATS:
            raise ValueError(f"cannot draw {p}: cost-model plots are {COSTMODEL_PLOTS}, formats {PLOT_FORMATS}")
    for name in COSTMODEL_PLOTS:
        paths = [p for p in map(Path, outputs) if p.stem == name]
        if not paths:
            continue
        try:
            drawn = _busbw(points) if name == "busbw" else _predicted(grid)
        except Exception as e:
            traceback.print_exc()
            plt.close("all")
            drawn = f"could not draw this plot: {type(e).__name__}: {e}"
        fig = no_data(TITLES[name], drawn) if isinstance(drawn, str) else drawn
        if not isinstance(drawn, str):
            fig.suptitle(TITLES[name], y=1.02)
        written += _save(fig, paths)
    return written
