"""From records to tables (pandas): ``runs.csv`` (one row per record), ``scaling.csv`` (one row
per model x hardware x strategy x world size) and ``dropped.csv``.

Definitions: docs/METRICS.md (each number once; registry: :mod:`benchbench.metrics`):

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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from benchbench.job import Job
from benchbench.metrics import METRICS, SUMMARY, SUMMARY_NAMES
from benchbench.record import atomic_write_text, job_of, read_record
from benchbench.study import Dropped

#: Identity of a run in runs.csv; then one column per summary metric, then the run's verdict.
RUN_ID_COLUMNS = [
    "study", "model", "hardware", "strategy", "world_size", "dp", "tp", "pp", "repeat", "status", "global_batch",
]  # fmt: skip
RUN_COLUMNS = [
    *RUN_ID_COLUMNS, *SUMMARY_NAMES, "loss_first", "loss_last", "loss_dev", "correct", "applied", "error",
]  # fmt: skip
SCALING_KEYS = ["model", "hardware", "strategy", "world_size"]
#: Summary metrics carried into scaling.csv, each combined over repeats as the registry says.
SCALING_METRICS = [m for m in SUMMARY if m.across_repeats != "none"]
NOISY_CV = 0.10  # a group is flagged noisy above this step-time CV, |drift| or throughput CV
CI_LEVEL = 0.95
SINGLE = "single"
DROPPED_COLUMNS = [f.name for f in fields(Dropped)]
_ACROSS_REPEATS = {
    "mean": lambda v: float(np.mean(v)),
    "median": lambda v: float(np.median(v)),
    "max": lambda v: float(np.max(v)),
    "max_abs": lambda v: float(max(v, key=abs)),  # the value of largest magnitude, sign kept
    "first": lambda v: v[0],
}


def load_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read records; the order of ``paths`` is kept."""
    return [read_record(p) for p in paths]


def _reference_key(job: Job) -> tuple:
    """What a run must share with its single-process reference."""
    return (job.model, job.hardware, job.global_batch, job.dtype, job.seed)


def _reference_losses(records: list[dict[str, Any]], jobs: list[Job]) -> dict[tuple, list[float]]:
    refs: dict[tuple, tuple[int, list[float]]] = {}
    for r, j in zip(records, jobs, strict=True):
        if r["status"] != "ok" or j.strategy != SINGLE:
            continue
        key = _reference_key(j)
        if key not in refs or j.repeat < refs[key][0]:
            refs[key] = (j.repeat, r["loss"])
    return {k: v for k, (_, v) in refs.items()}


def loss_deviation(loss: list[float], reference: list[float]) -> float:
    """Largest absolute difference between two trajectories of equal length; ``inf`` when their
    lengths differ (a truncated run never matches over a common prefix), NaN when both are empty."""
    if len(loss) != len(reference):
        return float("inf")
    if not loss:
        return float("nan")
    return float(np.max(np.abs(np.asarray(loss) - np.asarray(reference))))


def trajectory_tolerance(record: dict[str, Any], job: Job) -> float:
    """Largest ``loss_dev`` that still matches: the study's ``loss_tolerance`` (absolute), or the
    gate's relative tolerance for the job's precision times the loss, whichever is larger (bf16 and
    TF32 runs differ from the fp32 CPU reference by rounding, not by 1e-5)."""
    relative = (record["summary"].get("verify_tolerance") or 0.0) * max(map(abs, record["loss"]), default=0.0)
    return max(job.loss_tolerance, relative)


def _verdict(record: dict[str, Any], job: Job, dev: float) -> str:
    """``correct``: the gate's verdict first (a mismatch there is final), then the trajectory."""
    if record["status"] != "ok":
        return ""
    gate = record["summary"].get("verify_verdict")
    if gate == "MISMATCH" or len(record["loss"]) != job.total_steps:
        return "MISMATCH"
    if job.plan.lossy:
        return "lossy"
    if not np.isnan(dev) and not dev <= trajectory_tolerance(record, job):
        return "MISMATCH"  # the AdamW trajectory left the single-process one
    if gate == "match":
        return "match"
    return "no reference" if np.isnan(dev) else "match"


def _run_row(record: dict[str, Any], job: Job, ref: list[float] | None) -> dict[str, Any]:
    ok = record["status"] == "ok"
    dev = loss_deviation(record["loss"], ref) if (ref is not None and ok) else float("nan")
    loss, error = record["loss"], record["error"]
    return {
        "study": job.study, "model": job.model, "hardware": job.hardware, "strategy": job.strategy,
        "world_size": job.world_size, "dp": job.dp, "tp": job.tp, "pp": job.pp, "repeat": job.repeat,
        "status": record["status"], "global_batch": job.global_batch,
        **{k: record["summary"].get(k) for k in SUMMARY_NAMES},
        "loss_first": loss[0] if loss else None, "loss_last": loss[-1] if loss else None,
        "loss_dev": dev, "correct": _verdict(record, job, dev), "applied": " → ".join(record.get("applied", [])),
        "error": error.splitlines()[0] if error else "",
    }  # fmt: skip


def runs_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record, with ``loss_dev`` against the single-process run and a verdict."""
    jobs = [job_of(r) for r in records]
    refs = _reference_losses(records, jobs)
    rows = [_run_row(r, j, refs.get(_reference_key(j))) for r, j in zip(records, jobs, strict=True)]
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


def _across_repeats(records: list[dict[str, Any]], name: str, how: str) -> Any:
    values = [r["summary"].get(name) for r in records if r["summary"].get(name) is not None]
    return _ACROSS_REPEATS[how](values) if values else None


def _ratio(measured: float | None, estimate: float | None) -> float | None:
    return measured / estimate if measured is not None and estimate else None


def _configuration_row(job: Job, rs: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's row of scaling.csv from its ok repeats (``job``: the first's)."""
    thr = [r["summary"]["samples_per_s"] for r in rs]  # one figure per repeat: the unit of the statistics
    row: dict[str, Any] = {
        "model": job.model, "hardware": job.hardware, "strategy": job.strategy, "world_size": job.world_size,
        "dp": job.dp, "tp": job.tp, "pp": job.pp, "global_batch": job.global_batch,
        "per_rank_batch": job.local_batch, "repeats": len(rs),
    }  # fmt: skip
    for m in SCALING_METRICS:
        row[m.column] = _across_repeats(rs, m.name, m.across_repeats)
    row["throughput"], row["throughput_ci_low"], row["throughput_ci_high"] = mean_ci(thr)
    row["throughput_cv"] = sample_cv(thr)
    row["lossy"] = job.plan.lossy
    row["model_state_vs_est"] = _ratio(row.get("model_state_bytes"), row.get("model_state_bytes_est"))
    row["activation_vs_est"] = _ratio(row.get("activation_bytes"), row.get("activation_bytes_est"))
    row["applied"] = " → ".join(rs[0].get("applied", []))
    drift = abs(row["step_time_drift"] or 0.0)
    between = row["throughput_cv"] if len(rs) > 1 else 0.0
    row["noisy"] = bool((row["step_time_cv"] or 0.0) > NOISY_CV or drift > NOISY_CV or between > NOISY_CV)
    return row


def scaling_table(records: list[dict[str, Any]], scaling: str = "strong") -> pd.DataFrame:
    """Throughput, speedup and efficiency per model x hardware x strategy x world size."""
    groups: dict[tuple, tuple[Job, list[dict[str, Any]]]] = {}
    for r in records:
        if r["status"] == "ok":
            j = job_of(r)
            groups.setdefault((j.model, j.hardware, j.strategy, j.world_size), (j, []))[1].append(r)
    table = pd.DataFrame([_configuration_row(j, rs) for _, (j, rs) in sorted(groups.items())])
    if table.empty:
        return table
    table.insert(4, "scaling", scaling)
    speedups, bases = [], []
    for _, row in table.iterrows():
        per_rank = row["per_rank_batch"] if scaling == "weak" else None
        base, label = _baseline(table, row, per_rank)
        speedups.append(row["throughput"] / base if base else float("nan"))
        bases.append(label)
    table["speedup"] = speedups
    table["efficiency"] = table["speedup"] / table["world_size"]
    table["baseline"] = bases
    return table


def _baseline(table: pd.DataFrame, row: pd.Series, per_rank: int | None) -> tuple[float | None, str]:
    """Throughput of the world-size-1 reference of ``row`` and its label."""
    same = table[(table["model"] == row["model"]) & (table["hardware"] == row["hardware"]) & (table["world_size"] == 1)]
    same = (
        same[same["per_rank_batch"] == per_rank]
        if per_rank is not None
        else same[same["global_batch"] == row["global_batch"]]
    )
    for strategy in (SINGLE, row["strategy"]):
        hit = same[same["strategy"] == strategy]
        if not hit.empty:
            return float(hit["throughput"].iloc[0]), f"{strategy} ws1"
    return None, "none"


def with_correctness(scaling: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Add each configuration's largest ``loss_dev`` over repeats and its verdict (any
    ``MISMATCH`` wins) to the scaling table."""
    if scaling.empty:
        return scaling
    ok = runs[runs["status"] == "ok"]

    def verdict(values: pd.Series) -> str:
        return "MISMATCH" if (values == "MISMATCH").any() else str(values.iloc[0])

    dev_how = METRICS["loss_dev"].across_repeats
    agg = ok.groupby(SCALING_KEYS).agg(loss_dev=("loss_dev", dev_how), correct=("correct", verdict)).reset_index()
    return scaling.merge(agg, on=SCALING_KEYS, how="left")


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def aggregate(
    record_paths: Iterable[str | Path],
    outputs: Mapping[str, str | Path],
    scaling: str = "strong",
    dropped: list[dict[str, Any]] | None = None,
) -> dict[str, pd.DataFrame]:
    """Write the tables (names: :data:`benchbench.layout.TABLES`) to ``outputs[name]``; return the frames."""
    records = load_records(record_paths)
    runs = runs_table(records)
    frames = {
        "runs": runs,
        "scaling": with_correctness(scaling_table(records, scaling), runs),
        "dropped": pd.DataFrame(dropped or [], columns=DROPPED_COLUMNS),
    }
    if set(outputs) != set(frames):
        raise ValueError(f"aggregate writes {sorted(frames)}, got outputs for {sorted(outputs)}")
    for name, df in frames.items():
        write_csv(df, outputs[name])
    return frames
