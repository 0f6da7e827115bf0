"""The report's "Prediction" section: the answer first (median and worst step-time error over the
configurations measured), predicted vs measured per configuration with its errors (misses beyond
15 % flagged), the per-strategy summary, the calibration (fits and the sweep, busbw-vs-size plot),
the predicted scaling up to 4,096 ranks and the recommended plans. Every table goes through
:func:`benchbench.htmltable.data_table` (registry labels and units, definition links); every input
may be missing or unusable (no records, a failed calibration, no cost model yet): the section then
says what is missing instead of failing the report."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup

from benchbench.costmodel.calibration import Calibration
from benchbench.costmodel.validate import ALL, MISS, headline, load_calibrations, ranks
from benchbench.htmltable import data_table

KEYS = ["model", "hardware", "strategy", "world_size"]
PREDICTION_SHOWN = [*KEYS, "repeats", "source", "step_time_pred_s", "step_time_meas_s", "step_time_err",
                    "samples_per_s_pred", "samples_per_s_meas", "samples_per_s_err", "model_state_pred",
                    "model_state_meas", "model_state_err", "bubble_pred", "bubble_meas", "bubble_err", "miss",
                    "extrapolated", "terms", "note"]  # fmt: skip
SUMMARY_SHOWN = ["strategy", "configurations", "step_time_err_median", "step_time_err_worst", "model_state_err_median",
                 "model_state_err_worst", "bubble_err_median", "bubble_err_worst", "worst_config"]  # fmt: skip
FITS_SHOWN = ["hardware", "collective", "group_size", "level", "source", "alpha_us", "bus_bandwidth_gbps"]
POINTS_SHOWN = ["hardware", "collective", "group_size", "payload_bytes", "time_us", "algbw_gbps", "busbw_gbps"]
GRID_SHOWN = [*KEYS, "dp", "tp", "pp", "source", "samples_per_s", "step_time_s", "memory_pred", "fits", "infeasible"]
RECOMMEND_SHOWN = ["model", "hardware", "world_size", "best_plan", "basis", "margin", "runner_up_plan",
                   "excluded_by_memory"]  # fmt: skip
#: World sizes of the "Recommended plans" table (with the study's largest measured one).
RECOMMEND_AT = (8, 64, 1024)


def _read(path: str | Path | None) -> pd.DataFrame:
    from benchbench.plots import read_table

    if path is None or not Path(path).is_file():
        return pd.DataFrame()
    try:
        return read_table(path)
    except (OSError, ValueError):
        return pd.DataFrame()


def fits_frame(cals: Iterable[Calibration]) -> pd.DataFrame:
    """Per hardware, collective and group size: α (µs) and bus bandwidth B (GB/s)."""
    rows = [{"hardware": c.hardware, "collective": f.kind, "group_size": f.group_size, "level": f.level,
             "source": f.source, "alpha_us": f.alpha_s * 1e6, "bus_bandwidth_gbps": f.bus_bandwidth / 1e9}
            for c in cals for f in c.collectives]  # fmt: skip
    return pd.DataFrame(rows, columns=FITS_SHOWN)


def points_frame(cals: Iterable[Calibration]) -> pd.DataFrame:
    """The sweeps: size, time (µs), algbw and busbw (GB/s) per collective and group size."""
    rows = [{"hardware": c.hardware, "collective": p.kind, "group_size": p.group_size,
             "payload_bytes": p.payload_bytes, "time_us": p.time_s * 1e6, "algbw_gbps": p.algbw / 1e9,
             "busbw_gbps": p.busbw / 1e9} for c in cals for p in c.points]  # fmt: skip
    return pd.DataFrame(rows, columns=POINTS_SHOWN)


def _plan(row: Mapping[str, Any]) -> str:
    dims = [f"{d}{int(row[d])}" for d in ("dp", "tp", "pp") if _int(row.get(d)) > 1]
    return f"{row['strategy']} ({'·'.join(dims) or '1 rank'})"


def _int(v: Any) -> int:
    try:
        return int(v) if not (isinstance(v, float) and math.isnan(v)) else 0
    except (TypeError, ValueError):
        return 0


def _measured_at(table: pd.DataFrame, model: str, hardware: str, ws: int) -> pd.DataFrame:
    if table.empty or "samples_per_s_meas" not in table:
        return pd.DataFrame()
    t = table[(table["model"] == model) & (table["hardware"] == hardware) & (table["world_size"] == ws)]
    return t.dropna(subset=["samples_per_s_meas"]).assign(samples_per_s=t["samples_per_s_meas"], basis="measured")


def _candidates(grid: pd.DataFrame, table: pd.DataFrame, model: str, hardware: str, ws: int) -> tuple[Any, list]:
    """The plans that can run (measured where measured, else predicted) and those excluded by memory."""
    at = grid[(grid["model"] == model) & (grid["hardware"] == hardware) & (grid["world_size"] == ws)]
    fits = ~at["fits"].astype(str).str.lower().isin(("false", "0")) if "fits" in at else True
    excluded = at[~fits] if "fits" in at else at.iloc[0:0]
    ok = at[fits & at["infeasible"].fillna("").astype(str).eq("")] if "infeasible" in at else at[fits]
    ok = ok.dropna(subset=["samples_per_s"]).assign(basis="predicted")
    meas = _measured_at(table, model, hardware, ws)
    ok = pd.concat([meas, ok[~ok["strategy"].isin(set(meas.get("strategy", [])))]], ignore_index=True)
    return ok.sort_values("samples_per_s", ascending=False), [_plan(r) for r in excluded.to_dict("records")]


def recommendations(grid: pd.DataFrame, table: pd.DataFrame, world_sizes: Iterable[int] = RECOMMEND_AT) -> pd.DataFrame:
    """Per model × hardware of the grid × world size: the best plan (measured throughput where the
    study measured it, else predicted), the runner-up, the margin (best / runner-up throughput) and
    the plans excluded by memory."""
    if grid.empty or "samples_per_s" not in grid:
        return pd.DataFrame(columns=RECOMMEND_SHOWN)
    largest = [int(table["world_size"].max())] if not table.empty and "world_size" in table else []
    sizes = sorted(set(world_sizes) | set(largest))
    rows = []
    for model, hardware in dict.fromkeys(zip(grid["model"], grid["hardware"], strict=True)):
        for ws in sizes:
            ok, excluded = _candidates(grid, table, model, hardware, ws)
            if ok.empty and not excluded:
                continue
            best = ok.iloc[0] if not ok.empty else None
            second = ok.iloc[1] if len(ok) > 1 else None
            rows.append({"model": model, "hardware": hardware, "world_size": ws,
                         "best_plan": _plan(best) if best is not None else "none fits",
                         "basis": best["basis"] if best is not None else "",
                         "runner_up_plan": _plan(second) if second is not None else "",
                         "margin": best["samples_per_s"] / second["samples_per_s"] if second is not None else None,
                         "excluded_by_memory": ", ".join(excluded)})  # fmt: skip
    return pd.DataFrame(rows, columns=RECOMMEND_SHOWN)


def _svg(plots: Iterable[str | Path], name: str) -> Markup | None:
    from benchbench.report import NO_DATA, _inline_svg

    for p in map(Path, plots):
        if p.stem == name and p.suffix == ".svg" and p.is_file():
            svg = _inline_svg(p)
            return None if NO_DATA in svg else Markup(svg)
    return None


def _misses(table: pd.DataFrame) -> list[str]:
    """One line per configuration whose step-time error is beyond :data:`MISS`."""
    if table.empty or "step_time_err" not in table:
        return []
    err = pd.to_numeric(table["step_time_err"], errors="coerce")
    return [f"{r['strategy']} at {ranks(r['world_size'])} ({r['model']}, {r['hardware']}): predicted "
            f"{abs(e) * 100:.0f} % {'faster' if e < 0 else 'slower'} than measured"
            for r, e in zip(table.to_dict("records"), err, strict=True) if abs(e) > MISS]  # fmt: skip


def prediction_section(tables: Mapping[str, str | Path], calibrations: Iterable[str | Path] = (),
                       plots: Iterable[str | Path] = (), prefix: str = "") -> dict[str, Any]:  # fmt: skip
    """Everything the Prediction section shows (the template's ``s.prediction``); ``tables`` maps
    prediction, prediction_summary, predictions to their CSVs."""
    table, summary, grid = (_read(tables.get(n)) for n in ("prediction", "prediction_summary", "predictions"))
    cals, notes = load_calibrations(calibrations)
    measured_cals = [c for c in cals.values() if c.points]
    overall = summary[summary["strategy"] == ALL] if "strategy" in summary else summary
    plots = list(plots)
    return {
        "available": not (table.empty and grid.empty and not cals),
        "headline": headline(summary) if not summary.empty else "",
        "n_configs": int(overall["configurations"].iloc[0]) if not overall.empty else 0,
        "misses": _misses(table), "miss_pct": int(MISS * 100), "notes": notes,
        "unpredicted": sorted(set(table["note"].dropna().astype(str)) - {""}) if "note" in table else [],
        "table_html": data_table(table, f"{prefix}prediction", PREDICTION_SHOWN, flag="miss"),
        "summary_html": data_table(summary, f"{prefix}prediction-summary", SUMMARY_SHOWN, filter_box=False),
        "fits_html": data_table(fits_frame(cals.values()), f"{prefix}calibration-fits", FITS_SHOWN),
        "points_html": data_table(points_frame(measured_cals), f"{prefix}calibration-sweep", POINTS_SHOWN),
        "calibrated": sorted(cals), "busbw_svg": _svg(plots, "busbw"), "predicted_svg": _svg(plots, "predicted"),
        "recommend_html": data_table(recommendations(grid, table), f"{prefix}recommend", RECOMMEND_SHOWN),
        "grid_html": data_table(grid.rename(columns={"memory_bytes": "memory_pred"}), f"{prefix}grid", GRID_SHOWN),
    }  # fmt: skip
