"""The cost model's figures (``benchbench plot-costmodel``): the calibration's bus bandwidth against
message size (``busbw``, from the collective sweeps) and the predicted throughput up to 4,096
ranks (``predicted``, from predictions.csv); one with nothing to show is a "no data" figure."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from benchbench.results.figures.draw import (
    SUPTITLE_Y,
    drawing_failed,
    numbers,
    panel_grid,
    rows_with,
    save,
    titled,
    use_theme,
)
from benchbench.results.figures.palette import strategy_colour
from benchbench.spec.paths import COSTMODEL_PLOTS, PLOT_FORMATS

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
    rows = rows_with(points, "payload_bytes", "busbw")
    rows = rows[numbers(rows, "busbw") > 0]
    if rows.empty:
        return NO_CALIBRATION
    fig, panels = panel_grid(sorted(rows["hardware"].unique()), height=4.2)
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
#: Characters per line of a ``predicted`` panel's title. Three panels to a row leave each axes
#: about 2.2 in (160 pt) and its neighbours' titles a 0.3-axes gap: 24 characters of the 12 pt
#: title font stay inside that; one 37-character line ("cpu-local (measured; extrapolated from 4
#: ranks)") ran into the next panel's title.
TITLE_CHARS = 24


def _predicted_title(hardware: str, part: pd.DataFrame) -> str:
    """``hardware`` over ``(sources)``, and where the cost model reached beyond its calibration (a
    larger group than measured: the Prediction's ``extrapolated``) from which world size on; each
    wrapped at :data:`TITLE_CHARS`, so that no panel's title runs into its neighbour's."""
    bits = sorted(set(part["source"].dropna().astype(str))) if "source" in part else []
    if "extrapolated" in part:
        beyond = part.loc[part["extrapolated"].astype(str).str.lower() == "true", "world_size"]
        if not beyond.empty:
            bits.append(f"extrapolated from {int(beyond.min())} ranks")
    lines = textwrap.wrap(hardware, TITLE_CHARS, break_on_hyphens=False)
    lines += textwrap.wrap(f"({'; '.join(bits)})", TITLE_CHARS) if bits else []
    return "\n".join(lines)


def _top_below_titles(height_in: float, lines: int) -> float:
    """Where the top row of panels may end (a fraction of the figure's ``height_in``) so that
    titles of ``lines`` lines and their pad stay below the figure's title (:func:`titled` puts its
    top at :data:`SUPTITLE_Y`, one line of ``figure.titlesize``), with a pad between; at most
    matplotlib's default top (0.88)."""

    def points(key: str) -> float:
        return FontProperties(size=rcParams[key]).get_size_in_points()

    spacing = 1.2  # matplotlib's line spacing, in font sizes
    room_pt = 2 * rcParams["axes.titlepad"] + spacing * (lines * points("axes.titlesize") + points("figure.titlesize"))
    return min(0.88, SUPTITLE_Y - room_pt / 72 / height_in)


def _predicted_panel(ax: Axes, hardware: str, part: pd.DataFrame, styles: dict[str, str]) -> None:
    """One hardware's panel of ``predicted``: a line per model x strategy over the plans that fit,
    grey crosses where a plan does not fit in memory, log-log axes, the title. Whatever else is
    drawn on a hardware's predictions (published points, say) goes on ``ax`` after this."""
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


def _predicted(grid: pd.DataFrame) -> Figure | str:
    """Predicted throughput against world size, one panel per hardware (:func:`_predicted_panel`)."""
    rows = rows_with(grid, "samples_per_s", "world_size")
    if rows.empty:
        return NO_PREDICTIONS
    rows = rows.assign(fits_=_fits(rows))
    if "infeasible" in rows:  # refused by the plan rules: absent; refused for memory: a grey cross
        rows = rows[~(rows["infeasible"].fillna("").astype(str).ne("") & rows["fits_"])]
    styles = {m: _MODEL_STYLES[i % len(_MODEL_STYLES)] for i, m in enumerate(dict.fromkeys(rows["model"]))}
    fig, panels = panel_grid(list(dict.fromkeys(rows["hardware"])), height=4.2)
    for hardware, ax in panels.items():
        _predicted_panel(ax, hardware, rows[rows["hardware"] == hardware], styles)
    lines = max(ax.get_title().count("\n") + 1 for ax in panels.values())
    fig.subplots_adjust(top=_top_below_titles(fig.get_figheight(), lines), hspace=0.45, wspace=0.3)
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
    use_theme()
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
            drawn = drawing_failed(e)
        written += save(titled(name, drawn), paths)
    return written
