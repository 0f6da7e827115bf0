"""From records to tables (pandas): ``runs.csv`` (one row per record), ``scaling.csv`` (one row
per model x hardware x strategy x world size) and ``dropped.csv``.

Definitions (DESIGN.md, "Scaling terms"; docs/METRICS.md):

* throughput = global batch / median step time (samples/s), median over repeats;
* baseline = the ``single`` job of the same model, hardware and global batch (strong scaling) or
  per-rank batch (weak scaling); where the study has none, the strategy's own world-size-1 job;
* speedup S(N) = throughput(N) / throughput(baseline) — equal to T(1)/T(N) under strong scaling;
* efficiency E(N) = S(N) / N (strong), = throughput(N) / (N * throughput(1)) (weak): the same
  arithmetic in throughput terms;
* loss_dev = max_k |loss_k - loss_k(single)| against the ``single`` job with the same model,
  global batch, dtype and seed (first repeat), over the steps both ran.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchbench.record import atomic_write_text, read_record

RUN_COLUMNS = [
    "study", "model", "hardware", "strategy", "world_size", "dp", "tp", "pp", "repeat", "status",
    "global_batch", "step_time_median_s", "step_time_cv", "samples_per_s", "tokens_per_s",
    "model_tflops_per_rank", "mfu", "peak_mem_mb", "comm_bytes_per_step", "comm_bytes_source",
    "exposed_comm_fraction", "bubble_fraction_measured", "bubble_fraction_theoretical",
    "loss_first", "loss_last", "loss_dev", "correct", "error",
]  # fmt: skip
SCALING_KEYS = ["model", "hardware", "strategy", "world_size"]
NOISY_CV = 0.10  # a group is flagged noisy above this step-time CV or repeat spread
SINGLE = "single"


def load_records(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read records; the order of ``paths`` is kept."""
    return [read_record(p) for p in paths]


def _reference_losses(records: list[dict[str, Any]]) -> dict[tuple, list[float]]:
    refs: dict[tuple, tuple[int, list[float]]] = {}
    for r in records:
        j = r["job"]
        if r["status"] != "ok" or j["strategy"] != SINGLE:
            continue
        key = (j["model"], j["hardware"], j["global_batch"], j["dtype"], j["seed"])
        if key not in refs or j["repeat"] < refs[key][0]:
            refs[key] = (j["repeat"], r["loss"])
    return {k: v for k, (_, v) in refs.items()}


def loss_deviation(loss: list[float], reference: list[float]) -> float:
    """Largest absolute difference over the steps both trajectories have."""
    n = min(len(loss), len(reference))
    if n == 0:
        return float("nan")
    return float(np.max(np.abs(np.asarray(loss[:n]) - np.asarray(reference[:n]))))


def runs_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record, with ``loss_dev`` against the single-process run and a verdict."""
    refs = _reference_losses(records)
    rows = []
    for r in records:
        j, s = r["job"], r["summary"]
        ref = refs.get((j["model"], j["hardware"], j["global_batch"], j["dtype"], j["seed"]))
        dev = loss_deviation(r["loss"], ref) if (ref is not None and r["status"] == "ok") else float("nan")
        tol = float(j.get("loss_tolerance", 1e-5))
        if r["status"] != "ok":
            correct = ""
        elif np.isnan(dev):
            correct = "no reference"
        elif j["plan"].get("lossy"):
            correct = "lossy"
        else:
            correct = "match" if dev <= tol else "MISMATCH"
        rows.append({
            "study": j["study"], "model": j["model"], "hardware": j["hardware"], "strategy": j["strategy"],
            "world_size": j["world_size"], "dp": j["dp"], "tp": j["tp"], "pp": j["pp"], "repeat": j["repeat"],
            "status": r["status"], "global_batch": j["global_batch"],
            **{k: s.get(k) for k in ("step_time_median_s", "step_time_cv", "samples_per_s", "tokens_per_s",
                                     "model_tflops_per_rank", "mfu", "peak_mem_mb", "comm_bytes_per_step",
                                     "comm_bytes_source", "exposed_comm_fraction", "bubble_fraction_measured",
                                     "bubble_fraction_theoretical")},
            "loss_first": r["loss"][0] if r["loss"] else None,
            "loss_last": r["loss"][-1] if r["loss"] else None,
            "loss_dev": dev, "correct": correct, "error": (r["error"] or "").splitlines()[0] if r["error"] else "",
        })  # fmt: skip
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def median_ci(values: np.ndarray, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap confidence interval of the median (percentile method, fixed seed)."""
    if len(values) < 2:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    meds = np.median(rng.choice(values, size=(resamples, len(values)), replace=True), axis=1)
    lo, hi = np.percentile(meds, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


def scaling_table(records: list[dict[str, Any]], scaling: str = "strong") -> pd.DataFrame:
    """Throughput, speedup and efficiency per model x hardware x strategy x world size."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        if r["status"] == "ok":
            j = r["job"]
            groups.setdefault((j["model"], j["hardware"], j["strategy"], j["world_size"]), []).append(r)
    rows = []
    for (model, hw, strategy, ws), rs in sorted(groups.items()):
        batch = rs[0]["job"]["global_batch"]
        pooled = np.concatenate([np.asarray(r["step_time_s"], dtype=float) for r in rs])
        t_med = float(np.median([r["summary"]["step_time_median_s"] for r in rs]))
        t_lo, t_hi = median_ci(pooled)
        thr = [r["summary"]["samples_per_s"] for r in rs]
        tok = [r["summary"]["tokens_per_s"] for r in rs if r["summary"]["tokens_per_s"] is not None]
        spread = (max(thr) - min(thr)) / float(np.median(thr))
        max_cv = max(r["summary"]["step_time_cv"] or 0.0 for r in rs)
        rows.append({
            "model": model, "hardware": hw, "strategy": strategy, "world_size": ws,
            "dp": rs[0]["job"]["dp"], "tp": rs[0]["job"]["tp"], "pp": rs[0]["job"]["pp"],
            "global_batch": batch, "per_rank_batch": batch // max(rs[0]["job"]["dp"], 1), "repeats": len(rs),
            "step_time_median_s": t_med,
            "throughput": float(np.median(thr)),
            "throughput_ci_low": batch / t_hi, "throughput_ci_high": batch / t_lo,
            "tokens_per_s": float(np.median(tok)) if tok else None,
            "peak_mem_mb": max(r["summary"]["peak_mem_mb"] or 0.0 for r in rs),
            "comm_bytes_per_step": rs[0]["summary"]["comm_bytes_per_step"],
            "exposed_comm_fraction": _median_of(rs, "exposed_comm_fraction"),
            "bubble_fraction_measured": _median_of(rs, "bubble_fraction_measured"),
            "bubble_fraction_theoretical": rs[0]["summary"].get("bubble_fraction_theoretical"),
            "lossy": bool(rs[0]["job"]["plan"].get("lossy", False)),
            "noisy": bool(max_cv > NOISY_CV or spread > NOISY_CV),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table.insert(4, "scaling", scaling)
    speedups, effs, bases = [], [], []
    for _, row in table.iterrows():
        per_rank = row["per_rank_batch"] if scaling == "weak" else None
        base, label = _baseline(table, row, per_rank)
        speedup = row["throughput"] / base if base else float("nan")
        speedups.append(speedup)
        effs.append(speedup / row["world_size"])
        bases.append(label)
    table["speedup"] = speedups
    table["efficiency"] = effs
    table["baseline"] = bases
    return table


def _median_of(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r["summary"].get(key) for r in records if r["summary"].get(key) is not None]
    return float(np.median(values)) if values else None


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

    agg = ok.groupby(SCALING_KEYS).agg(loss_dev=("loss_dev", "max"), correct=("correct", verdict)).reset_index()
    return scaling.merge(agg, on=SCALING_KEYS, how="left")


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def aggregate(
    record_paths: Iterable[str | Path],
    out_dir: str | Path,
    scaling: str = "strong",
    dropped: list[dict[str, Any]] | None = None,
) -> dict[str, pd.DataFrame]:
    """Write ``runs.csv``, ``scaling.csv`` and ``dropped.csv`` to ``out_dir``; return the frames."""
    records = load_records(record_paths)
    out = Path(out_dir)
    runs = runs_table(records)
    frames = {
        "runs": runs,
        "scaling": with_correctness(scaling_table(records, scaling), runs),
        "dropped": pd.DataFrame(dropped or [], columns=["model", "hardware", "strategy", "world_size", "reason"]),
    }
    for name, df in frames.items():
        write_csv(df, out / f"{name}.csv")
    return frames
