"""Validate the cost model against the study's own records: for every configuration measured, the
prediction beside the measurement and the relative error (pred − meas) / meas, computed here from
the records each time (never copied from anywhere); a summary per strategy and overall (median and
worst |error|); the predicted grid up to 4,096 ranks; and the recommended plans drawn from it.

* ``prediction.csv`` (:func:`validate`): one row per model × hardware × strategy × world size with
  ok records: the measured figure is the **median over the configuration's ok repeats** of the
  record's summary figure (``step_time_median_s``, ``samples_per_s``, ``model_state_bytes``,
  ``bubble_fraction_measured``); the predicted one is :func:`~benchbench.costmodel.predict.predict_job`
  of the record's own job (``Job.from_dict(record["job"])``) with its hardware's calibration;
* ``prediction_summary.csv`` (:func:`summarize`): per strategy and ``all``;
* ``predictions.csv`` (:func:`prediction_grid`): the study's models × strategies × hardware at world
  sizes 1, 2, 4, …, 4,096 (the study's hardware with its calibration; every other hardware profile
  whose specs allow it, "from spec"), from :func:`~benchbench.costmodel.grid.predict_configs`;
* ``recommendations.csv`` (:func:`recommendations`): per model × hardware at 8, 64 and 1,024 ranks
  (and the study's largest) the best plan of :func:`~benchbench.costmodel.recommend.recommend`
  (exact plans unless the study's ``allow_lossy``; a lossy plan labelled where it is named).

Definitions: docs/METRICS.md, "The cost model against the records".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchbench.costmodel.calibration import Calibration, from_spec, read_calibration
from benchbench.costmodel.grid import predict_configs
from benchbench.costmodel.predict import predict_job
from benchbench.costmodel.recommend import recommend, study_global_batch
from benchbench.spec.hardware import hardware_names, load_hardware
from benchbench.spec.job import Job

KEYS = ["model", "hardware", "strategy", "world_size"]
#: A step-time prediction further than this from the measurement is a miss (the issue's target).
MISS = 0.15
ALL = "all"
#: The grid's world sizes: 1, 2, 4, …, 4,096.
WORLD_SIZES = tuple(2**k for k in range(13))
Predictor = Callable[[Job, Calibration], Any]


@dataclass(frozen=True)
class Figure:
    """One compared figure: the record summary's key, the Prediction's field, the table's columns."""

    name: str
    record_key: str
    prediction_field: str
    pred: str
    meas: str
    err: str


FIGURES = (
    Figure("step_time", "step_time_median_s", "step_time_s", "step_time_pred_s", "step_time_meas_s", "step_time_err"),
    Figure(
        "samples_per_s",
        "samples_per_s",
        "samples_per_s",
        "samples_per_s_pred",
        "samples_per_s_meas",
        "samples_per_s_err",
    ),
    Figure(
        "model_state",
        "model_state_bytes",
        "model_state_bytes",
        "model_state_pred",
        "model_state_meas",
        "model_state_err",
    ),
    Figure("bubble", "bubble_fraction_measured", "bubble_fraction", "bubble_pred", "bubble_meas", "bubble_err"),
)
#: The figures the summary gives median and worst |error| of.
SUMMARISED = ("step_time", "model_state", "bubble")
TABLE_COLUMNS = [
    *KEYS,
    "dp",
    "tp",
    "pp",
    "repeats",
    "source",
    "extrapolated",
    *(c for f in FIGURES for c in (f.pred, f.meas, f.err)),
    "miss",
    "terms",
    "note",
]
SUMMARY_COLUMNS = [
    "strategy",
    "configurations",
    *(f"{n}_err_{w}" for n in SUMMARISED for w in ("median", "worst")),
    "worst_config",
]


def _number(value: Any) -> float | None:
    """A finite float, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def relative_error(pred: Any, meas: Any) -> float | None:
    """(pred − meas) / meas; ``None`` where either is missing or the measurement is not positive."""
    p, m = _number(pred), _number(meas)
    if p is None or m is None or m <= 0:
        return None
    return (p - m) / m


def _median(records: list[dict[str, Any]], key: str) -> float | None:
    values = [v for r in records if (v := _number(r["summary"].get(key))) is not None]
    return statistics.median(values) if values else None


def measured(records: Iterable[dict[str, Any]]) -> list[tuple[Job, int, dict[str, float | None]]]:
    """Per configuration with ok records: its job (the lowest repeat's), the number of ok repeats,
    and per figure the median over them of the record's summary figure; in the records' order."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("status") == "ok":
            j = r["job"]
            groups.setdefault(tuple(j[k] for k in KEYS), []).append(r)
    out = []
    for group in groups.values():
        first = min(group, key=lambda r: r["job"]["repeat"])
        figures = {f.name: _median(group, f.record_key) for f in FIGURES}
        out.append((Job.from_dict(first["job"]), len(group), figures))
    return out


def _predict(job: Job, cal: Calibration | None, predict: Predictor) -> tuple[Any, str]:
    """The prediction of ``job`` and "" or ``None`` and why there is none."""
    if cal is None:
        return None, f"no usable calibration of {job.hardware}"
    try:
        return predict(job, cal), ""
    except Exception as e:  # one configuration the model cannot predict is a note, not a lost table
        return None, f"no prediction: {type(e).__name__}: {e}"


def _row(job: Job, repeats: int, meas: dict[str, float | None], pred: Any, note: str) -> dict[str, Any]:
    row: dict[str, Any] = {k: getattr(job, k) for k in KEYS} | {"dp": job.dp, "tp": job.tp, "pp": job.pp}
    row |= {"repeats": repeats, "source": getattr(pred, "source", None)}
    row["extrapolated"] = getattr(pred, "extrapolated", None)
    for f in FIGURES:
        p = _number(getattr(pred, f.prediction_field, None))
        row |= {f.pred: p, f.meas: meas[f.name], f.err: relative_error(p, meas[f.name])}
    err = row["step_time_err"]
    row["miss"] = None if err is None else abs(err) > MISS
    row["terms"] = getattr(pred, "terms", "")
    row["note"] = note or (getattr(pred, "infeasible", None) or "")
    return row


def default_predictor() -> Predictor:
    """The cost model's :func:`~benchbench.costmodel.predict.predict_job`."""
    return predict_job


def validate(
    records: Iterable[dict[str, Any]], calibrations: Mapping[str, Calibration], predict: Predictor | None = None
) -> pd.DataFrame:
    """``prediction.csv``: per configuration measured, predicted vs measured and the relative error
    of each :data:`FIGURES`, computed from ``records`` (module docstring); a configuration without
    a calibration or a prediction keeps its measured figures and says why in ``note``."""
    predict = predict or default_predictor()
    rows = []
    for job, repeats, meas in measured(records):
        pred, note = _predict(job, calibrations.get(job.hardware), predict)
        rows.append(_row(job, repeats, meas, pred, note))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _abs_stats(errors: pd.Series) -> tuple[float | None, float | None]:
    """(median |e|, the e of largest |e|, sign kept) over the non-missing errors."""
    e = pd.to_numeric(errors, errors="coerce").dropna()
    if e.empty:
        return None, None
    return float(e.abs().median()), float(e.loc[e.abs().idxmax()])


def ranks(n: int) -> str:
    """``"1 rank"``, ``"8 ranks"``."""
    return f"{int(n)} rank{'s' if int(n) != 1 else ''}"


def _config_label(row: pd.Series) -> str:
    return f"{row['strategy']}, {ranks(row['world_size'])} ({row['model']}, {row['hardware']})"


def _summary_row(name: str, part: pd.DataFrame) -> dict[str, Any]:
    steps = pd.to_numeric(part["step_time_err"], errors="coerce")
    row: dict[str, Any] = {"strategy": name, "configurations": int(steps.notna().sum())}
    for n in SUMMARISED:
        row[f"{n}_err_median"], row[f"{n}_err_worst"] = _abs_stats(part[f"{n}_err"])
    row["worst_config"] = _config_label(part.loc[steps.abs().idxmax()]) if steps.notna().any() else ""
    return row


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """``prediction_summary.csv``: per strategy (in the table's order) and ``all``: how many
    configurations have a step-time error, the median |error| and the worst error (sign kept) of
    step time, model state and bubble, and the configuration of the worst step-time error."""
    if table.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    rows = [_summary_row(s, table[table["strategy"] == s]) for s in dict.fromkeys(table["strategy"])]
    rows.append(_summary_row(ALL, table))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _pct(x: float) -> str:
    return f"{abs(x) * 100:.0f} %" if abs(x) >= 0.01 else f"{abs(x) * 100:.1g} %"


def headline(summary: pd.DataFrame) -> str:
    """The answer first: "Predicted step time within 9 % (median) of measured over 20
    configurations; worst 31 % (dp-naive, 2 ranks (…)); model state within 0.4 % (median)"."""
    overall = summary[summary["strategy"] == ALL] if not summary.empty else summary
    if overall.empty or not overall["configurations"].iloc[0]:
        return "No configuration has both a prediction and a measurement."
    o = overall.iloc[0]
    n = int(o["configurations"])
    worst = o["step_time_err_worst"]
    text = (
        f"Predicted step time within {_pct(o['step_time_err_median'])} (median) of measured over {n} "
        f"configuration{'s' if n != 1 else ''}; worst {_pct(worst)} "
        f"({'slower' if worst < 0 else 'faster'} than predicted: {o['worst_config']})"
    )
    if _number(o["model_state_err_median"]) is not None:
        ms_median, ms_worst = _pct(o["model_state_err_median"]), _pct(o["model_state_err_worst"])
        text += f"; model state within {ms_median} (median), worst {ms_worst}"
    if _number(o["bubble_err_median"]) is not None:
        text += f"; bubble within {_pct(o['bubble_err_median'])} (median)"
    return text + "."


def load_calibrations(paths: Iterable[str | Path]) -> tuple[dict[str, Calibration], list[str]]:
    """The usable calibrations of ``paths`` by hardware, and a note for each file that is not one
    (a failed or interrupted calibration leaves the study's other figures alone)."""
    out, notes = {}, []
    for path in paths:
        try:
            cal = read_calibration(Path(path))
        except ValueError as e:
            notes.append(str(e))
            continue
        out[cal.hardware] = cal
    return out, notes


def grid_calibrations(study_hardware: list[str], calibrations: Mapping[str, Calibration]) -> dict[str, Calibration]:
    """The study's hardware with its calibration (when usable), and every other profile — the
    study's own among them when its calibration is missing or failed — from spec where its specs
    give the figures (labelled ``from spec``, as ``benchbench recommend`` falls back)."""
    out = {h: calibrations[h] for h in study_hardware if h in calibrations}
    for name in hardware_names():
        if name not in out:
            try:
                out[name] = from_spec(name, load_hardware(name))
            except ValueError:
                continue  # no link or compute figures: calibrate it to predict it
    return out


def prediction_grid(
    cfg: dict[str, Any], calibrations: Mapping[str, Calibration], world_sizes: Iterable[int] = WORLD_SIZES
) -> tuple[pd.DataFrame, list[str]]:
    """``predictions.csv``: :func:`~benchbench.costmodel.grid.predict_configs` of the validated
    study ``cfg`` at ``world_sizes`` on each hardware of :func:`grid_calibrations` (infeasible plans
    included, with why), and a note for each hardware the cost model could not predict."""
    rows, notes = [], []
    for hardware, cal in grid_calibrations(cfg["hardware"], calibrations).items():
        try:
            rows += [p.to_dict() for p in predict_configs(cfg, {hardware: cal}, list(world_sizes))]
        except Exception as e:  # one profile the model cannot predict leaves the others
            notes.append(f"no predictions for {hardware}: {type(e).__name__}: {e}")
    return pd.DataFrame(rows), notes


#: World sizes of the "Recommended plans" table, with the study's largest.
RECOMMEND_AT = (8, 64, 1024)
RECOMMEND_COLUMNS = [
    "model",
    "hardware",
    "world_size",
    "global_batch",
    "source",
    "best_plan",
    "basis",
    "extrapolated",
    "samples_per_s",
    "runner_up_plan",
    "margin",
    "excluded_by_memory",
    "plans",
    "lossy_left_out",
]


def _plan(p: Any, lossy: Mapping[str, str]) -> str:
    """``name (dims)``, and a lossy plan's label in brackets (:func:`~benchbench.costmodel.recommend.lossy_label`)."""
    dims = [f"{d}{getattr(p, d)}" for d in ("dp", "tp", "pp") if getattr(p, d) > 1]
    label = lossy.get(p.strategy, "")
    return f"{p.strategy} ({'·'.join(dims) or '1 rank'})" + (f" [{label}]" if label else "")


def _recommend_row(cfg: dict[str, Any], key: tuple[str, str, int], cal: Calibration, results: Path | None) -> dict:
    model, hardware, ws = key
    gb = study_global_batch(cfg, model, hardware, ws)  # inside the study: its records count as measured
    rec = recommend(cfg, model, hardware, ws, cal, global_batch=gb, results=results)
    best, second = rec.ranked[0] if rec.ranked else None, rec.ranked[1] if len(rec.ranked) > 1 else None
    return {
        "model": model,
        "hardware": hardware,
        "world_size": ws,
        "global_batch": rec.global_batch,
        "source": rec.source,
        "best_plan": _plan(best.prediction, rec.lossy) if best else "none fits",
        "basis": best.label if best else "",
        "samples_per_s": best.samples_per_s if best else None,
        "extrapolated": bool(best.prediction.extrapolated) if best and best.label == "predicted" else None,
        "runner_up_plan": _plan(second.prediction, rec.lossy) if second else "",
        "margin": 1 + rec.margin if rec.margin is not None else None,
        "excluded_by_memory": ", ".join(_plan(p, rec.lossy) for p in rec.excluded),
        "plans": len(rec.ranked),
        "lossy_left_out": len(rec.left_out_lossy),
    }


def recommendations(
    cfg: dict[str, Any],
    calibrations: Mapping[str, Calibration],
    results: Path | None = None,
    world_sizes: Iterable[int] = RECOMMEND_AT,
) -> tuple[pd.DataFrame, list[str]]:
    """``recommendations.csv``: per model × hardware (:func:`grid_calibrations`) × world size (the
    study's largest and ``world_sizes``) :func:`benchbench.costmodel.recommend.recommend` over every
    candidate plan: the best plan that fits (measured where ``results`` holds an ok record of it,
    else predicted), the runner-up, margin = best / runner-up throughput, the plans excluded by memory;
    exact plans only unless the study's ``allow_lossy`` (then each lossy plan is labelled so)."""
    sizes = sorted({max(cfg["world_sizes"]), *world_sizes})
    rows, notes = [], []
    for hardware, cal in grid_calibrations(cfg["hardware"], calibrations).items():
        for model in cfg["models"]:
            for ws in sizes:
                try:
                    rows.append(_recommend_row(cfg, (model, hardware, ws), cal, results))
                except Exception as e:  # noted, the rest answered
                    notes.append(f"no recommendation for {model} on {hardware} at {ws}: {type(e).__name__}: {e}")
    return pd.DataFrame(rows, columns=RECOMMEND_COLUMNS), notes
