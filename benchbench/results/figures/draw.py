"""What the study's and the cost model's figures share: the theme (fonts of 10 pt or more, SVG text
kept as text, reproducible ids), figures about 1000 px wide with panels three to a row, the "no
data: <why>" figure, numbers read from a table's columns, and saving without time stamps."""

from __future__ import annotations

import math
import traceback
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from benchbench.results.figures.captions import NO_DATA, TITLES

WIDTH_IN = 10.4  # ≈ 1000 px in a browser (an SVG point is 4/3 px)
SUPTITLE_Y = 1.02  # the top of a figure's title (:func:`titled`), a fraction of the figure's height
PNG_DPI = 96
THEME = {
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


def use_theme() -> None:
    """Draw what follows in :data:`THEME`."""
    plt.rcParams.update(THEME)


def save(fig: Figure, paths: list[Path]) -> list[Path]:
    """Write ``fig`` to each of ``paths`` (format from the suffix; no time stamp) and close it."""
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


def no_data(title: str, why: str) -> Figure:
    """A figure that says the plot has nothing to show, and why."""
    fig, ax = plt.subplots(figsize=(WIDTH_IN * 0.7, 2.2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{NO_DATA} {why}", ha="center", va="center", wrap=True, fontsize=11)
    fig.suptitle(title)
    return fig


def numbers(data: pd.DataFrame, column: str) -> pd.Series:
    """``column`` as floats (NaN where missing, not a number or infinite; all NaN without it)."""
    if column not in data:
        return pd.Series(np.nan, index=data.index, dtype=float)
    return pd.to_numeric(data[column], errors="coerce").replace([np.inf, -np.inf], np.nan).astype(float)


def rows_with(data: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The rows with a finite number in each of ``columns``."""
    keep = pd.Series(True, index=data.index)
    for c in columns:
        keep &= numbers(data, c).notna()
    return data[keep]


def panel_grid(keys: list[str], height: float = 3.6) -> tuple[Figure, dict[str, Axes]]:
    """One panel per key, three to a row, the figure :data:`WIDTH_IN` wide."""
    n = max(len(keys), 1)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH_IN, height * rows), squeeze=False)
    for ax in axes.flat[len(keys) :]:
        ax.axis("off")
    return fig, dict(zip(keys, axes.flat, strict=False))


def drawing_failed(error: Exception) -> str:
    """Why a figure could not be drawn, from the exception being handled (its traceback goes to
    stderr, the rule's log; every open figure is closed)."""
    traceback.print_exc()
    plt.close("all")
    return f"could not draw this plot: {type(error).__name__}: {error}"


def titled(name: str, drawn: Figure | str) -> Figure:
    """Figure ``name`` under its title, or (``drawn`` a reason) a "no data" figure saying why."""
    if isinstance(drawn, str):
        return no_data(TITLES[name], drawn)
    drawn.suptitle(TITLES[name], y=SUPTITLE_Y)
    return drawn
