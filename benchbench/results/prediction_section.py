"""The report's "Prediction" section: the answer first (median and worst step-time error over the
configurations measured), predicted vs measured per configuration with its errors (misses beyond
15 % flagged), the per-strategy summary, the calibration (fits and the sweep, busbw-vs-size plot),
the predicted scaling up to 4,096 ranks and the recommended plans. Every table goes through
:func:`benchbench.results.htmltable.data_table` (registry labels and units, definition links); every input
may be missing or unusable (no records, a failed calibration, no cost model yet): the section then
says what is missing instead of failing the report."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup

from benchbench.costmodel.calibration import Calibration
from benchbench.costmodel.validate import ALL, MISS, headline, load_calibrations, ranks
from benchbench.results.figures.svg import drawn_svg
from benchbench.results.htmltable import data_table
from benchbench.results.tables import read_table
from benchbench.spec.paths import PREDICTION_TABLES

KEYS = ["model", "hardware", "strategy", "world_size"]
PREDICTION_SHOWN = [
    *KEYS,
    "repeats",
    "source",
    "step_time_pred_s",
    "step_time_meas_s",
    "step_time_err",
    "samples_per_s_pred",
    "samples_per_s_meas",
    "samples_per_s_err",
    "model_state_pred",
    "model_state_meas",
    "model_state_err",
    "bubble_pred",
    "bubble_meas",
    "bubble_err",
    "miss",
    "extrapolated",
    "terms",
    "note",
]
SUMMARY_SHOWN = [
    "strategy",
    "configurations",
    "step_time_err_median",
    "step_time_err_worst",
    "model_state_err_median",
    "model_state_err_worst",
    "bubble_err_median",
    "bubble_err_worst",
    "worst_config",
]
FITS_SHOWN = ["hardware", "collective", "group_size", "level", "source", "alpha_us", "bus_bandwidth_gbps"]
POINTS_SHOWN = ["hardware", "collective", "group_size", "payload_bytes", "time_us", "algbw_gbps", "busbw_gbps"]
GRID_SHOWN = [
    *KEYS,
    "dp",
    "tp",
    "pp",
    "source",
    "extrapolated",
    "samples_per_s",
    "step_time_s",
    "memory_pred",
    "fits",
    "infeasible",
]
RECOMMEND_SHOWN = [
    "model",
    "hardware",
    "world_size",
    "global_batch",
    "source",
    "best_plan",
    "basis",
    "extrapolated",
    "samples_per_s",
    "margin",
    "runner_up_plan",
    "excluded_by_memory",
    "lossy_left_out",
]


def _read(path: str | Path | None) -> pd.DataFrame:
    if path is None or not Path(path).is_file():
        return pd.DataFrame()
    try:
        return read_table(path)
    except (OSError, ValueError):
        return pd.DataFrame()


def fits_frame(cals: Iterable[Calibration]) -> pd.DataFrame:
    """Per hardware, collective and group size: α (µs) and bus bandwidth B (GB/s)."""
    rows = [
        {
            "hardware": c.hardware,
            "collective": f.kind,
            "group_size": f.group_size,
            "level": f.level,
            "source": f.source,
            "alpha_us": f.alpha_s * 1e6,
            "bus_bandwidth_gbps": f.bus_bandwidth / 1e9,
        }
        for c in cals
        for f in c.collectives
    ]
    return pd.DataFrame(rows, columns=FITS_SHOWN)


def points_frame(cals: Iterable[Calibration]) -> pd.DataFrame:
    """The sweeps: size, time (µs), algbw and busbw (GB/s) per collective and group size."""
    rows = [
        {
            "hardware": c.hardware,
            "collective": p.kind,
            "group_size": p.group_size,
            "payload_bytes": p.payload_bytes,
            "time_us": p.time_s * 1e6,
            "algbw_gbps": p.algbw / 1e9,
            "busbw_gbps": p.busbw / 1e9,
        }
        for c in cals
        for p in c.points
    ]
    return pd.DataFrame(rows, columns=POINTS_SHOWN)


def _svg(plots: Iterable[str | Path], name: str) -> Markup | None:
    for p in map(Path, plots):
        if p.stem == name and p.suffix == ".svg" and p.is_file():
            svg = drawn_svg(p)
            return None if svg is None else Markup(svg)
    return None


def _misses(table: pd.DataFrame) -> list[str]:
    """One line per configuration whose step-time error is beyond :data:`MISS`."""
    if table.empty or "step_time_err" not in table:
        return []
    err = pd.to_numeric(table["step_time_err"], errors="coerce")
    return [
        f"{r['strategy']} at {ranks(r['world_size'])} ({r['model']}, {r['hardware']}): predicted "
        f"{abs(e) * 100:.0f} % {'faster' if e < 0 else 'slower'} than measured"
        for r, e in zip(table.to_dict("records"), err, strict=True)
        if abs(e) > MISS
    ]


def prediction_section(
    tables: Mapping[str, str | Path],
    calibrations: Iterable[str | Path] = (),
    plots: Iterable[str | Path] = (),
    prefix: str = "",
) -> dict[str, Any]:
    """Everything the Prediction section shows (the template's ``s.prediction``); ``tables`` maps
    :data:`~benchbench.spec.paths.PREDICTION_TABLES` names to their CSVs."""
    table, summary, grid, recommended = (_read(tables.get(n)) for n in PREDICTION_TABLES)
    cals, notes = load_calibrations(calibrations)
    measured_cals = [c for c in cals.values() if c.points]
    overall = summary[summary["strategy"] == ALL] if "strategy" in summary else summary
    plots = list(plots)
    return {
        "available": not (table.empty and grid.empty and not cals),
        "headline": headline(summary) if not summary.empty else "",
        "n_configs": int(overall["configurations"].iloc[0]) if not overall.empty else 0,
        "misses": _misses(table),
        "miss_pct": int(MISS * 100),
        "notes": notes,
        "unpredicted": sorted(set(table["note"].dropna().astype(str)) - {""}) if "note" in table else [],
        "table_html": data_table(table, f"{prefix}prediction", PREDICTION_SHOWN, flag="miss"),
        "summary_html": data_table(summary, f"{prefix}prediction-summary", SUMMARY_SHOWN, filter_box=False),
        "fits_html": data_table(fits_frame(cals.values()), f"{prefix}calibration-fits", FITS_SHOWN),
        "points_html": data_table(points_frame(measured_cals), f"{prefix}calibration-sweep", POINTS_SHOWN),
        "calibrated": sorted(cals),
        "busbw_svg": _svg(plots, "busbw"),
        "predicted_svg": _svg(plots, "predicted"),
        "recommend_html": data_table(recommended, f"{prefix}recommend", RECOMMEND_SHOWN),
        "grid_html": data_table(grid.rename(columns={"memory_bytes": "memory_pred"}), f"{prefix}grid", GRID_SHOWN),
    }
