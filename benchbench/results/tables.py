"""From records to tables (pandas): ``runs.csv`` (one row per record), ``scaling.csv`` (one row
per model x hardware x strategy x world size), ``failures.csv`` (failed and infeasible records
counted by failure kind), ``rejected.csv`` (files that are not usable records, and why) and
``dropped.csv``; and a table read back as written (:func:`read_table`).

Definitions: docs/METRICS.md (each number once; registry: :mod:`benchbench.spec.metrics`):

* the unit of the statistics is one repeat (a separate job): its figure is ``samples_per_s`` =
  global batch / that repeat's median step time. Steps within a repeat are correlated and share
  the repeat's machine state, so they are not pooled into one sample;
* throughput = mean over repeats of the repeat figures; throughput_ci_low/high = its 95 %
  Student-t interval over repeats (mean ± t(0.975, n-1) · s/√n; empty (NaN) with one repeat);
  throughput_cv = sample sd / mean of the repeat figures (NaN with one repeat);
* noisy = any repeat's step-time CV or |drift| above 10 %, or throughput_cv above 10 %;
* baseline = the ``single`` job of the same model, hardware and global batch (strong scaling) or
  per-rank batch (weak scaling); where the study has none, the strategy's own world-size-1 job;
* speedup S(N) = throughput(N) / throughput(baseline) — equal to T(1)/T(N) under strong scaling;
* efficiency E(N) = S(N) / N (strong), = throughput(N) / (N * throughput(1)) (weak): the same
  arithmetic in throughput terms;
* loss_dev = max_k |loss_k - loss_k(single)| against the ``single`` job with the same model,
  global batch, dtype and seed (first repeat), over the steps both ran.

Columnar: records are read once (:mod:`benchbench.results.records`), each becomes one flat row, and the
per-configuration figures are grouped reductions over columns (numpy / pandas), never a scan of
the table per configuration. Sums over repeats add each configuration's rows in record order,
the same arithmetic as ``np.mean`` on one configuration's values (:func:`_group_sum`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from benchbench.protocol.record import atomic_write_text
from benchbench.results.records import Rejected, read_records
from benchbench.spec.job import Dropped
from benchbench.spec.metrics import METRICS, SUMMARY, SUMMARY_NAMES
from benchbench.spec.paths import TABLES
from benchbench.spec.plan import lossy_kinds

#: Identity of a run in runs.csv; then one column per summary metric, then the run's verdict.
RUN_ID_COLUMNS = [
    "study",
    "model",
    "hardware",
    "strategy",
    "world_size",
    "dp",
    "tp",
    "pp",
    "repeat",
    "status",
    "global_batch",
]
RUN_COLUMNS = [
    *RUN_ID_COLUMNS,
    *SUMMARY_NAMES,
    "loss_first",
    "loss_last",
    "loss_dev",
    "correct",
    "applied",
    "error",
    "failure_kind",
]
SCALING_KEYS = ["model", "hardware", "strategy", "world_size"]
#: Summary metrics carried into scaling.csv, each combined over repeats as the registry says.
SCALING_METRICS = [m for m in SUMMARY if m.across_repeats != "none"]
NOISY_CV = 0.10  # a group is flagged noisy above this step-time CV, |drift| or throughput CV
CI_LEVEL = 0.95
SINGLE = "single"
DROPPED_COLUMNS = [f.name for f in fields(Dropped)]
REJECTED_COLUMNS = [f.name for f in fields(Rejected)]
FAILURE_KEYS = [*SCALING_KEYS, "kind"]
FAILURE_COLUMNS = [*FAILURE_KEYS, "count", "message"]
#: Kind of a failed or infeasible record without a ``failure`` entry (records before version 4).
UNKNOWN_FAILURE = {"failed": "unknown", "infeasible": "infeasible"}
#: The tables' name columns (text, whatever they look like).
ID_COLUMNS = ("model", "hardware", "strategy", "series", "baseline")


def load_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The usable records of ``paths``, order kept; the others are named on stderr and left out,
    as in :func:`aggregate`. ``ValueError`` (naming the first bad file) when none is usable."""
    records, rejected = read_records(paths)
    if rejected and not records:
        raise ValueError(f"no usable record; {rejected[0].path}: {rejected[0].reason}")
    return records


def _reference_key(job: dict[str, Any]) -> tuple:
    """What a run must share with its single-process reference (``job``: a record's ``job``)."""
    return (job["model"], job["hardware"], job["global_batch"], job["dtype"], job["seed"])


def _reference_losses(records: list[dict[str, Any]]) -> dict[tuple, list[float]]:
    refs: dict[tuple, tuple[int, list[float]]] = {}
    for r in records:
        j = r["job"]
        if r["status"] != "ok" or j["strategy"] != SINGLE:
            continue
        key = _reference_key(j)
        if key not in refs or j["repeat"] < refs[key][0]:
            refs[key] = (j["repeat"], r["loss"])
    return {k: v for k, (_, v) in refs.items()}


def loss_deviation(loss: list[float], reference: list[float]) -> float:
    """Largest absolute difference between two trajectories of equal length; ``inf`` when their
    lengths differ (a truncated run never matches over a common prefix), NaN when both are empty."""
    if len(loss) != len(reference):
        return float("inf")
    if not loss:
        return float("nan")
    return float(np.max(np.abs(np.asarray(loss) - np.asarray(reference))))


def _lossy(plan: dict[str, Any]) -> bool:
    """Whether a record's plan changes the arithmetic (:func:`~benchbench.spec.plan.lossy_kinds`:
    gradient compression or float8 matmuls)."""
    return bool(lossy_kinds(plan))


def trajectory_tolerance(record: dict[str, Any]) -> float:
    """Largest ``loss_dev`` that still matches: the study's ``loss_tolerance`` (absolute), or the
    gate's relative tolerance for the job's precision times the loss, whichever is larger (bf16 and
    TF32 runs differ from the fp32 CPU reference by rounding, not by 1e-5)."""
    relative = (record["summary"].get("verify_tolerance") or 0.0) * max(map(abs, record["loss"]), default=0.0)
    return max(record["job"]["loss_tolerance"], relative)


def _verdict(record: dict[str, Any], dev: float) -> str:
    """``correct``: the gate's verdict first (a mismatch there is final), then the trajectory."""
    if record["status"] != "ok":
        return ""
    job, gate = record["job"], record["summary"].get("verify_verdict")
    if gate == "MISMATCH" or len(record["loss"]) != job["warmup_steps"] + job["steps"]:
        return "MISMATCH"
    if _lossy(job["plan"]):
        return "lossy"
    if not np.isnan(dev) and not dev <= trajectory_tolerance(record):
        return "MISMATCH"  # the AdamW trajectory left the single-process one
    if gate == "match":
        return "match"
    return "no reference" if np.isnan(dev) else "match"


def failure_kind(record: dict[str, Any]) -> str:
    """The record's ``failure.kind``: empty for ok; ``unknown`` / ``infeasible`` where absent."""
    if record["status"] == "ok":
        return ""
    failure = record.get("failure")
    kind = failure.get("kind") if isinstance(failure, dict) else None
    return kind if isinstance(kind, str) and kind else UNKNOWN_FAILURE.get(record["status"], "unknown")


def failure_message(record: dict[str, Any]) -> str:
    """First line of ``failure.message``, else of ``error``; empty if neither says anything."""
    failure = record.get("failure")
    message = failure.get("message") if isinstance(failure, dict) else None
    text = message if isinstance(message, str) and message.strip() else record["error"] or ""
    return text.strip().splitlines()[0] if text.strip() else ""


def _run_row(record: dict[str, Any], ref: list[float] | None) -> dict[str, Any]:
    job, ok, summary = record["job"], record["status"] == "ok", record["summary"]
    plan, loss, error = job["plan"], record["loss"], record["error"]
    dev = loss_deviation(loss, ref) if (ref is not None and ok) else float("nan")
    return {
        "study": job["study"],
        "model": job["model"],
        "hardware": job["hardware"],
        "strategy": job["strategy"],
        "world_size": job["world_size"],
        "dp": plan["dp"],
        "tp": plan["tp"],
        "pp": plan["pp"],
        "repeat": job["repeat"],
        "status": record["status"],
        "global_batch": job["global_batch"],
        **{k: summary.get(k) for k in SUMMARY_NAMES},
        "loss_first": loss[0] if loss else None,
        "loss_last": loss[-1] if loss else None,
        "loss_dev": dev,
        "correct": _verdict(record, dev),
        "applied": " → ".join(record.get("applied", [])),
        "error": error.splitlines()[0] if error else "",
        "failure_kind": failure_kind(record),
    }


def runs_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record, with ``loss_dev`` against the single-process run and a verdict."""
    refs = _reference_losses(records)
    rows = [_run_row(r, refs.get(_reference_key(r["job"]))) for r in records]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def mean_ci(values: Iterable[float], level: float = CI_LEVEL) -> tuple[float, float, float]:
    """Mean of ``values`` (one figure per repeat) and its Student-t confidence interval,
    mean ± t((1+level)/2, n-1) · s/√n. With one value the interval is empty (NaN, NaN): one
    repeat says nothing about how much repeats vary. The mean always lies inside the interval."""
    v = np.asarray(list(values), dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return mean, mean - half, mean + half


def sample_cv(values: Iterable[float]) -> float:
    """Sample standard deviation / mean; NaN with fewer than two values."""
    v = np.asarray(list(values), dtype=float)
    return float(v.std(ddof=1) / v.mean()) if len(v) > 1 else float("nan")


def _group_sum(values: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """Per group (``codes`` in 0..n-1) the sum of ``values`` in row order, NaN for a group without
    rows. Groups of equal size are summed as the rows of one matrix (``sum(axis=1)``), which is
    bit for bit ``np.sum`` of each group alone (``np.add.reduceat`` adds in another order)."""
    out = np.full(n, np.nan)
    if not len(codes):
        return out
    order = np.argsort(codes, kind="stable")
    c, v = codes[order], values[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    sizes = np.diff(np.r_[starts, len(c)])
    for size in np.unique(sizes):
        first = starts[sizes == size]
        out[c[first]] = v[first[:, None] + np.arange(size)].sum(axis=1)
    return out


def _floats(raw: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in raw], dtype=float)


def _pick(raw: list[Any], how: str, codes: np.ndarray, n: int) -> list[Any]:
    """Per group the raw value (type kept) of its first present row (``first``) or of its first
    row of largest magnitude (``max_abs``, sign kept); ``None`` where no row has one."""
    pos = np.array([i for i, v in enumerate(raw) if v is not None], dtype=np.intp)
    picked = np.full(n, -1, dtype=np.intp)
    if len(pos):
        if how == "first":
            chosen = pd.Series(pos).groupby(codes[pos]).min()
        else:
            chosen = pd.Series(np.abs(_floats([raw[i] for i in pos])), index=pos).groupby(codes[pos]).idxmax()
        picked[chosen.index.to_numpy()] = chosen.to_numpy()
    return [raw[p] if p >= 0 else None for p in picked]


def _across_repeats(raw: list[Any], how: str, codes: np.ndarray, n: int) -> Any:
    """One metric's column in scaling.csv: its present values combined per group as ``how`` says."""
    if how in ("first", "max_abs"):
        return _pick(raw, how, codes, n)
    values = _floats(raw)
    present = ~np.isnan(values)
    values, codes = values[present], codes[present]
    if how == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return _group_sum(values, codes, n) / np.bincount(codes, minlength=n)
    grouped = pd.Series(values).groupby(codes)
    return (grouped.median() if how == "median" else grouped.max()).reindex(range(n)).to_numpy()


def _repeat_statistics(thr: np.ndarray, codes: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """:func:`mean_ci` and :func:`sample_cv` of every group's repeat figures at once."""
    count = np.bincount(codes, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = _group_sum(thr, codes, n) / count
        dev = thr - mean[codes]
        std = np.sqrt(_group_sum(dev * dev, codes, n) / (count - 1))
        half = stats.t.ppf((1 + CI_LEVEL) / 2, count - 1) * std / np.sqrt(count)
        multi = count > 1
        return {
            "throughput": mean,
            "throughput_ci_low": np.where(multi, mean - half, np.nan),
            "throughput_ci_high": np.where(multi, mean + half, np.nan),
            "throughput_cv": np.where(multi, std / mean, np.nan),
        }


def _ratio(measured: Any, estimate: Any) -> np.ndarray:
    """measured / estimate where both are present and the estimate is not 0, else NaN."""
    m, e = _floats(list(measured)), _floats(list(estimate))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(~np.isnan(m) & ~np.isnan(e) & (e != 0), m / e, np.nan)


def _configuration_columns(ok: list[dict[str, Any]], codes: np.ndarray, keys: list[tuple]) -> dict[str, Any]:
    """scaling.csv's columns before the baseline, one entry per configuration (``keys``, sorted)."""
    n = len(keys)
    first = pd.Series(np.arange(len(ok))).groupby(codes).min().to_numpy()
    jobs = [ok[i]["job"] for i in first]
    cols: dict[str, Any] = {name: [k[i] for k in keys] for i, name in enumerate(SCALING_KEYS)}
    for name in ("dp", "tp", "pp"):
        cols[name] = [j["plan"][name] for j in jobs]
    cols["global_batch"] = [j["global_batch"] for j in jobs]
    cols["per_rank_batch"] = [j["global_batch"] // max(j["plan"]["dp"], 1) for j in jobs]
    cols["repeats"] = np.bincount(codes, minlength=n)
    for m in SCALING_METRICS:
        cols[m.column] = _across_repeats([r["summary"].get(m.name) for r in ok], m.across_repeats, codes, n)
    cols.update(_repeat_statistics(_floats([r["summary"].get("samples_per_s") for r in ok]), codes, n))
    cols["lossy"] = [_lossy(j["plan"]) for j in jobs]
    cols["model_state_vs_est"] = _ratio(cols["model_state_bytes"], cols["model_state_bytes_est"])
    cols["activation_vs_est"] = _ratio(cols["activation_bytes"], cols["activation_bytes_est"])
    cols["applied"] = [" → ".join(ok[i].get("applied", [])) for i in first]
    cv = np.nan_to_num(_floats(list(cols["step_time_cv"])), nan=0.0)
    drift = np.abs(np.nan_to_num(_floats(list(cols["step_time_drift"])), nan=0.0))
    between = np.where(cols["repeats"] > 1, np.nan_to_num(cols["throughput_cv"], nan=0.0), 0.0)
    cols["noisy"] = (cv > NOISY_CV) | (drift > NOISY_CV) | (between > NOISY_CV)
    return cols


def _baselines(table: pd.DataFrame, scaling: str) -> tuple[list[float], list[str]]:
    """Each row's speedup over its world-size-1 reference (``single`` first, else its own
    strategy; the first such row in table order) and the reference's label."""
    batch = table["per_rank_batch" if scaling == "weak" else "global_batch"].tolist()
    model, hardware, strategy = table["model"].tolist(), table["hardware"].tolist(), table["strategy"].tolist()
    thr = table["throughput"].tolist()
    base: dict[tuple, float] = {}
    for i, ws in enumerate(table["world_size"].tolist()):
        if ws == 1:
            base.setdefault((model[i], hardware[i], batch[i], strategy[i]), float(thr[i]))
    speedups, labels = [], []
    for i in range(len(table)):
        hit = next(
            ((s, base[k]) for s in (SINGLE, strategy[i]) if (k := (model[i], hardware[i], batch[i], s)) in base),
            (None, None),
        )
        speedups.append(thr[i] / hit[1] if hit[1] else float("nan"))
        labels.append(f"{hit[0]} ws1" if hit[0] else "none")
    return speedups, labels


def scaling_table(records: list[dict[str, Any]], scaling: str = "strong") -> pd.DataFrame:
    """Throughput, speedup and efficiency per model x hardware x strategy x world size."""
    ok = [r for r in records if r["status"] == "ok"]
    if not ok:
        return pd.DataFrame()
    row_keys = [(r["job"]["model"], r["job"]["hardware"], r["job"]["strategy"], r["job"]["world_size"]) for r in ok]
    keys = sorted(set(row_keys))
    index = {k: i for i, k in enumerate(keys)}
    codes = np.fromiter((index[k] for k in row_keys), dtype=np.intp, count=len(row_keys))
    table = pd.DataFrame(_configuration_columns(ok, codes, keys))
    table.insert(4, "scaling", scaling)
    table["speedup"], table["baseline"] = _baselines(table, scaling)
    table["efficiency"] = table["speedup"] / table["world_size"]
    return table[[c for c in table.columns if c != "baseline"] + ["baseline"]]


def with_correctness(scaling: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Add each configuration's largest ``loss_dev`` over repeats and its verdict (any
    ``MISMATCH`` wins) to the scaling table."""
    if scaling.empty:
        return scaling
    ok = runs[runs["status"] == "ok"].assign(_mismatch=lambda f: f["correct"] == "MISMATCH")
    dev_how = METRICS["loss_dev"].across_repeats
    agg = ok.groupby(SCALING_KEYS).agg(
        loss_dev=("loss_dev", dev_how), correct=("correct", "first"), _mismatch=("_mismatch", "any")
    )
    agg.loc[agg["_mismatch"], "correct"] = "MISMATCH"
    return scaling.merge(agg.drop(columns="_mismatch").reset_index(), on=SCALING_KEYS, how="left")


def failures_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Failed and infeasible records counted per configuration and failure kind, with the first
    one's message (first line) as an example."""
    rows = [
        {**{k: r["job"][k] for k in SCALING_KEYS}, "kind": failure_kind(r), "message": failure_message(r)}
        for r in records
        if r["status"] != "ok"
    ]
    if not rows:
        return pd.DataFrame(columns=FAILURE_COLUMNS)
    grouped = pd.DataFrame(rows).groupby(FAILURE_KEYS, sort=True)
    return grouped.agg(count=("message", "size"), message=("message", "first")).reset_index()[FAILURE_COLUMNS]


def tables(
    records: list[dict[str, Any]],
    scaling: str = "strong",
    dropped: list[dict[str, Any]] | None = None,
    rejected: list[Rejected] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every table (names: :data:`benchbench.spec.paths.TABLES`) of usable ``records``."""
    runs = runs_table(records)
    return {
        "runs": runs,
        "scaling": with_correctness(scaling_table(records, scaling), runs),
        "failures": failures_table(records),
        "rejected": pd.DataFrame([asdict(r) for r in rejected or []], columns=REJECTED_COLUMNS),
        "dropped": pd.DataFrame(dropped or [], columns=DROPPED_COLUMNS),
    }


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` to ``path`` as CSV (no index), atomically."""
    atomic_write_text(path, df.to_csv(index=False))


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


def aggregate(
    record_paths: Iterable[str | Path],
    outputs: Mapping[str, str | Path],
    scaling: str = "strong",
    dropped: list[dict[str, Any]] | None = None,
) -> dict[str, pd.DataFrame]:
    """Read the records, leaving out (and naming on stderr and in ``rejected``) files that are not
    usable records; write each table named in ``outputs`` to ``outputs[name]``; return all frames."""
    unknown = set(outputs) - set(TABLES)
    if unknown:
        raise ValueError(f"aggregate writes {list(TABLES)}, not {sorted(unknown)}")
    records, rejected = read_records(record_paths)
    frames = tables(records, scaling, dropped, rejected)
    for name, path in outputs.items():
        write_csv(frames[name], path)
    return frames
