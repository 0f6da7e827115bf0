"""Tables for people: headers with units from the metric registry (each followed by a small link,
``<a class="def">``, to its definition),
numbers rounded to what their noise supports, and the markup the report's inline script sorts and
filters: ``<table class="data" id="t-NAME">``, ``<th data-key="COLUMN">``, numeric cells with
``data-value="RAW"``, inside ``<div class="scroll">`` under an
``<input type="search" class="table-filter" data-for="t-NAME">``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
from markupsafe import Markup, escape

from benchbench.spec.metrics import METRICS

#: Labels where the registry's name is not one people read (the unit is added from the registry).
LABELS = {
    "throughput": "Throughput",
    "throughput_cv": "Throughput CV",
    "samples_per_s": "Throughput",
    "tokens_per_s": "Token throughput",
    "model_tflops_per_rank": "Model TFLOP/s per rank",
    "step_time_median_s": "Median step time",
    "step_time_cv": "Step-time CV",
    "peak_mem_mb": "Peak memory",
    "comm_bytes_per_step": "Comm per step",
    "comm_bus_bytes_per_step": "Bus bytes per step",
    "exposed_comm_s": "Exposed comm",
    "exposed_comm_fraction": "Exposed comm share",
    "bubble_fraction_measured": "Bubble, measured",
    "bubble_fraction_simulated": "Bubble, simulated",
    "bubble_fraction_theoretical": "Bubble, theory",
    "hfu": "HFU",
    "mfu": "MFU",
    "compile_time_s": "Compile time",
    "model_state_bytes": "Model state",
    "model_state_bytes_est": "Model state, estimated",
    "model_state_vs_est": "Model state / est.",
    "activation_bytes": "Activations",
    "activation_bytes_est": "Activations, estimated",
    "activation_vs_est": "Activations / est.",
    "verify_grad_rel_err": "Grad rel. error",
    "verify_verdict": "Gate verdict",
    "verify_tolerance": "Gate tolerance",
    "loss_dev": "Loss deviation",
    "correct": "Correct",
    "applied": "Applied composition",
    "world_size": "Ranks",
    "dp": "DP",
    "tp": "TP",
    "pp": "PP",
    "p_value": "p",
    "ratio": "Ratio",
    "global_batch": "Global batch",
    "failure_kind": "Failure",
    "best_efficiency": "Best efficiency",
    "runner_up": "Runner-up",
    "margin": "Margin (×)",
    "params": "Parameters",
    "seq_len": "Sequence length",
    "step_time_pred_s": "Step time, predicted",
    "step_time_meas_s": "Step time, measured",
    "step_time_err": "Step-time error",
    "samples_per_s_pred": "Throughput, predicted",
    "samples_per_s_meas": "Throughput, measured",
    "samples_per_s_err": "Throughput error",
    "model_state_pred": "Model state, predicted",
    "model_state_meas": "Model state, measured",
    "model_state_err": "Model-state error",
    "bubble_pred": "Bubble, predicted",
    "bubble_meas": "Bubble, measured",
    "bubble_err": "Bubble error",
    "miss": "Miss > 15 %",
    "configurations": "Configurations",
    "step_time_err_median": "Step time: median |error|",
    "step_time_err_worst": "Step time: worst error",
    "model_state_err_median": "Model state: median |error|",
    "model_state_err_worst": "Model state: worst error",
    "bubble_err_median": "Bubble: median |error|",
    "bubble_err_worst": "Bubble: worst error",
    "memory_pred": "Memory per rank, predicted",
    "alpha_us": "α",
    "bus_bandwidth_gbps": "Bus bandwidth B",
    "payload_bytes": "Size",
    "time_us": "Time",
    "algbw_gbps": "algbw",
    "busbw_gbps": "busbw",
    "group_size": "Ranks in group",
    "best_plan": "Best plan",
    "runner_up_plan": "Runner-up",
    "excluded_by_memory": "Excluded by memory",
    "lossy_left_out": "Lossy plans left out",
    "worst_config": "Worst configuration",
}
#: Definitions of the columns that are no metric (identity, labels): with the registry's, the page's
#: Definitions section; every header links to one of them.
COLUMN_DEFS = {
    "model": "the study's model name",
    "hardware": "the hardware profile's name",
    "strategy": "the parallel plan",
    "world_size": "number of ranks",
    "dp": "data-parallel degree",
    "tp": "tensor-parallel degree",
    "pp": "pipeline stages",
    "repeat": "which repeat of the configuration (0-based)",
    "status": "ok | failed | infeasible",
    "arch": "the model's architecture",
    "size": "the model's size settings",
    "seq_len": "tokens per sample (sequence models)",
    "scaling": "strong (global batch fixed) or weak",
    "global_batch": "samples per optimizer step over all ranks",
    "kind": "the failure kind (README)",
    "count": "number of records",
    "message": "first line of the failure",
    "failure_kind": "the failure kind",
    "fastest": "the fastest strategy whose correctness is match or lossy",
    "runner_up": "the next fastest such",
    "margin": "fastest throughput / runner-up throughput",
    "significance": "Welch t-test over repeats' samples_per_s, alpha 0.05",
    "best_efficiency": "highest efficiency among the correct strategies",
    "failed": "strategies that failed, by kind",
    "mismatched": "strategies whose correct is MISMATCH",
    "exact": "exact (plain arithmetic) or lossy (gradient compression, float8 matmuls)",
    "study": "the results folder",
    "collective": "the collective operation (nccl-tests' names)",
    "group_size": "ranks taking part in the collective",
    "level": "intra (one node) or inter (the group spans nodes)",
    "source": "measured (benchbench calibrate) or from spec (the hardware profile's figures)",
    "extrapolated": "the prediction reaches beyond what was calibrated (a larger group or another batch)",
    "fits": "the predicted memory per rank fits the profile's memory",
    "infeasible": "why the plan cannot run (plan rules or memory)",
    "best_plan": "the exact plan with the highest throughput that fits (measured where measured, else "
    "predicted); with allow_lossy, lossy plans too, each labelled lossy with the gate's error on it",
    "runner_up_plan": "the next such plan",
    "excluded_by_memory": "plans whose predicted memory exceeds the device's",
    "lossy_left_out": "lossy plans that fit but were not ranked (the study's allow_lossy is false)",
    "basis": "measured or predicted: where the best plan's throughput comes from",
    "worst_config": "the configuration with the largest |step_time_err|",
    "terms": "how the cost model composed the predicted step time",
    "note": "why a figure is missing",
}
#: Columns shown as a registered metric is (same unit).
ALIASES = {"best_efficiency": "efficiency", "margin": "ratio"}
#: Columns of whole numbers (shown without decimals).
INTEGERS = {"world_size", "dp", "tp", "pp", "repeat", "global_batch", "count", "params", "seq_len", "group_size"}
_MIB = {"bytes"}  # shown in MiB
_PERCENT = {"fraction"}  # shown as percentages
_NO_PERCENT = {"verify_grad_rel_err", "verify_tolerance", "p_value", "verify_loss_rel_err"}  # tiny: keep as is


def unit_shown(column: str) -> str:
    """The unit a column is shown in: registry's, bytes as MiB, fractions as %."""
    m = METRICS.get(ALIASES.get(column, column))
    if m is None:
        return ""
    if m.unit in _MIB:
        return "MiB"
    if m.unit in _PERCENT and column not in _NO_PERCENT and not column.startswith("verify_"):
        return "%"
    return "" if m.unit in ("count", "fraction") else m.unit


def label(column: str) -> str:
    """Human header: the label map or the name in words, then the shown unit in parentheses."""
    unit_of = METRICS[column].unit if column in METRICS else ""
    words = column.removesuffix({"s": "_s", "MiB": "_mb"}.get(unit_of, "\0"))  # the unit goes in parentheses
    text = LABELS.get(column) or words.replace("_", " ").capitalize()
    unit = unit_shown(column)
    return f"{text} ({unit})" if unit and f"({unit})" not in text else text


def sig(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, without an exponent for ordinary sizes."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    places = digits - 1 - math.floor(math.log10(abs(value)))
    if abs(value) >= 1e7 or abs(value) < 1e-4:
        return f"{value:.{digits - 1}e}"
    return f"{round(value, places):.{max(places, 0)}f}"


def with_error(value: float, half: float) -> str:
    """``123 ± 5``: the half-width rounded *up* to 1 significant digit (2 when it starts with 1),
    never narrower than it is; the value rounded to the decimal place of that rounded half-width."""
    if not (math.isfinite(half) and half > 0):
        return sig(value)
    digits = 2 if f"{half:e}".startswith("1") else 1
    step = 10.0 ** (math.floor(math.log10(half)) - digits + 1)
    up = math.ceil(round(half / step, 9)) * step  # round(..., 9): float noise (1.1 / 0.1) does not round up
    places = digits - 1 - math.floor(math.log10(up))
    fmt = f"{{:.{max(places, 0)}f}}"
    return f"{fmt.format(round(value, places))} ± {fmt.format(round(up, places))}"


def shown(column: str, value: Any) -> tuple[str, float | None]:
    """A cell's text and, for a number, its raw value (``data-value``)."""
    value = value.item() if hasattr(value, "item") else value  # numpy scalar -> Python
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", None
    if isinstance(value, bool):
        return ("yes" if value else "no"), None
    if not isinstance(value, int | float):
        return str(value), None
    raw, unit = float(value), unit_shown(column)
    if unit == "MiB" and METRICS[ALIASES.get(column, column)].unit == "bytes":
        return sig(raw / 2**20), raw
    if unit == "%":
        return f"{sig(raw * 100, 2)}", raw
    integer = column in INTEGERS or getattr(METRICS.get(column), "kind", "") == "integer"
    if raw.is_integer() and (isinstance(value, int) or integer):
        return f"{int(raw)}", raw
    return sig(raw), raw


def _header(column: str) -> Markup:
    """The label as plain text (a click sorts), then a small link to the column's definition."""
    text = escape(label(column))
    link = Markup("")
    if column in METRICS or column in COLUMN_DEFS:
        link = Markup(' <a class="def" href="#def-{}" title="definition of {}">?</a>').format(column, text)
    return Markup('<th data-key="{}">{}{}</th>').format(column, text, link)


def _cell(column: str, value: Any, ci: tuple[Any, Any] | None) -> Markup:
    text, raw = shown(column, value)
    if raw is not None and ci is not None and all(isinstance(c, int | float) and math.isfinite(c) for c in ci):
        text = with_error(raw, (float(ci[1]) - float(ci[0])) / 2)
    if raw is None:
        return Markup("<td>{}</td>").format(text)
    return Markup('<td data-value="{}">{}</td>').format(str(int(raw)) if raw.is_integer() else repr(raw), text)


def _row_open(row: Mapping[str, Any], flag: str | None) -> Markup:
    """``<tr>``, or ``<tr class="flag">`` where the row's ``flag`` column is true."""
    value = row.get(flag) if flag else None
    return Markup('<tr class="flag">' if value is True or str(value).lower() == "true" else "<tr>")


def data_table(
    df: pd.DataFrame,
    name: str,
    columns: list[str] | None = None,
    ci: Mapping[str, tuple[str, str]] | None = None,
    filter_box: bool = True,
    flag: str | None = None,
) -> Markup:
    """The table's markup (empty for an empty table); ``ci`` maps a column to its interval's
    (low, high) columns, shown as ``value ± half-width``; rows whose ``flag`` column is true are
    marked ``<tr class="flag">``."""
    if df.empty:
        return Markup("")
    cols = [c for c in (columns or list(df.columns)) if c in df.columns and df[c].notna().any()]
    ci = {c: lh for c, lh in (ci or {}).items() if c in cols and set(lh) <= set(df.columns)}
    head = Markup("").join(_header(c) for c in cols)
    body = Markup("\n").join(
        _row_open(row, flag)
        + Markup("{}</tr>").format(
            Markup("").join(_cell(c, row[c], (row[ci[c][0]], row[ci[c][1]]) if c in ci else None) for c in cols)
        )
        for row in df.to_dict("records")
    )
    tid = f"t-{name}"
    box = Markup('<input type="search" class="table-filter" data-for="{}" placeholder="filter rows">\n').format(tid)
    table = Markup(
        '<div class="scroll"><table class="data" id="{}">\n<thead><tr>{}</tr></thead>\n<tbody>\n{}\n'
        "</tbody></table></div>"
    ).format(tid, head, body)
    return (box if filter_box else Markup("")) + table


def definitions() -> list[tuple[str, str, str]]:
    """(name, label, definition) of every registered metric and every other column the tables show."""
    out = [(n, label(n), f"{m.definition}" + (f" [{m.unit}]" if m.unit else "")) for n, m in METRICS.items()]
    return out + [(n, label(n), d) for n, d in COLUMN_DEFS.items() if n not in METRICS]
