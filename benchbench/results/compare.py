"""``benchbench compare BASE NEW``: did throughput change between two runs of a study?

BASE and NEW are each a study's results folder (``results/<study>/``) or a ``runs.csv`` file. A
folder is read in this order: its records (``raw/``, through :func:`benchbench.results.tables.runs_table`),
else ``tables/runs.csv``, else ``tables/scaling.csv`` (per-configuration mean, ``throughput_cv``
and ``repeats``: the same test from summary statistics). The unit is one repeat's figure,
``samples_per_s``, as in the scaling table (docs/METRICS.md, "Comparing two runs").

Per configuration (model, hardware, strategy, world size) with ok runs on both sides:

* ratio = mean NEW / mean BASE throughput;
* Welch's t-test on the repeat figures (unequal variances; ``scipy.stats.ttest_ind_from_stats``
  with ``equal_var=False``, the same test as ``ttest_ind`` on the figures), two-sided p-value;
* ratio interval: the Welch (1 − alpha) interval of the difference of means, divided by the base
  mean (the base mean is taken as fixed there), so it excludes 1 exactly when p < alpha;
* verdict ``faster`` / ``slower`` when p < alpha and |ratio − 1| > threshold, else
  ``no significant change``. With one repeat on either side there is no test: the two means are
  held against the threshold only, verdict ``faster?`` / ``slower?`` / ``no significant change``,
  note ``1 repeat: no test``; these never fail the comparison.

The exit status is 1 when any configuration is ``slower``, or has ok runs in BASE and none in
NEW (``only in BASE``: failed or missing there — a gate must not pass a build that broke it)
unless ``allow_missing``; 0 otherwise. A record file that cannot be read is bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from benchbench.results.records import read_records, study_records
from benchbench.results.tables import SCALING_KEYS, runs_table
from benchbench.spec.config import ConfigError
from benchbench.spec.metrics import COMPARISON
from benchbench.spec.paths import StudyLayout

KEYS = SCALING_KEYS
COLUMNS = [*KEYS, *(m.name for m in COMPARISON)]
FASTER, SLOWER, SAME = "faster", "slower", "no significant change"
ONLY_BASE, ONLY_NEW = "only in BASE", "only in NEW"
NO_TEST = "1 repeat: no test"
_RUNS_NEEDS = {*KEYS, "status", "samples_per_s"}
_SCALING_NEEDS = {*KEYS, "throughput", "throughput_cv", "repeats"}


def _read_csv(path: Path, needs: set[str]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read it as CSV: {e}") from None
    missing = sorted(needs - set(df.columns))
    if missing:
        raise ConfigError(f"{path}: not a benchbench table; it lacks the column(s) {', '.join(missing)}")
    return df


def repeat_stats(runs: pd.DataFrame) -> pd.DataFrame:
    """Per configuration, over its ok runs: n, mean and sample sd of ``samples_per_s``, global batch
    and the composition applied (the plan as built: two studies may define a strategy name alike)."""
    ok = runs[(runs["status"] == "ok") & runs["samples_per_s"].notna()]
    batch = ok["global_batch"] if "global_batch" in ok else pd.Series(np.nan, index=ok.index)
    applied = ok["applied"] if "applied" in ok else pd.Series("", index=ok.index)
    grouped = ok.assign(global_batch=batch, applied=applied.fillna("")).groupby(KEYS, sort=True)
    return grouped.agg(
        n=("samples_per_s", "size"),
        mean=("samples_per_s", "mean"),
        sd=("samples_per_s", lambda v: v.std(ddof=1)),
        global_batch=("global_batch", "first"),
        applied=("applied", "first"),
    ).reset_index()


def scaling_stats(scaling: pd.DataFrame) -> pd.DataFrame:
    """The same statistics from scaling.csv: mean = ``throughput``, sd = ``throughput_cv`` x mean."""
    s = scaling.dropna(subset=["throughput"])
    batch = s["global_batch"] if "global_batch" in s else np.nan
    applied = s["applied"].fillna("") if "applied" in s else ""
    return pd.DataFrame(
        {
            **{k: s[k] for k in KEYS},
            "n": s["repeats"].astype(int),
            "mean": s["throughput"],
            "sd": s["throughput_cv"] * s["throughput"],
            "global_batch": batch,
            "applied": applied,
        }
    ).reset_index(drop=True)


def load_stats(source: str | Path) -> tuple[pd.DataFrame, str]:
    """Per-configuration statistics of BASE or NEW, and a line saying what was read."""
    path = Path(source)
    if path.is_file():
        return repeat_stats(_read_csv(path, _RUNS_NEEDS)), str(path)
    if not path.is_dir():
        raise ConfigError(f"{source}: no such results folder or runs.csv file")
    layout = StudyLayout(path.name, path.parent)
    records = study_records(layout) if layout.raw.is_dir() else []
    if records:
        usable, rejected = read_records(records)
        if rejected:
            bad = "; ".join(f"{r.path}: {r.reason}" for r in rejected[:3])
            raise ConfigError(f"{layout.raw}: cannot read the records ({len(rejected)} unusable): {bad}")
        try:
            runs = runs_table(usable)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{layout.raw}: cannot read the records: {e}") from None
        return repeat_stats(runs), f"{len(records)} records under {layout.raw}"
    for table, needs, to_stats in (("runs", _RUNS_NEEDS, repeat_stats), ("scaling", _SCALING_NEEDS, scaling_stats)):
        if layout.table(table).is_file():
            return to_stats(_read_csv(layout.table(table), needs)), str(layout.table(table))
    raise ConfigError(f"{source}: no records under {layout.raw} and no {layout.table('runs')} or scaling.csv")


def _direction(ratio: float, threshold: float, suffix: str = "") -> str:
    if ratio > 1 + threshold:
        return FASTER + suffix
    if ratio < 1 - threshold:
        return SLOWER + suffix
    return SAME


def welch(base: pd.Series, new: pd.Series, alpha: float) -> tuple[float, float, float]:
    """Welch's two-sided p-value and the (1 − alpha) interval of mean NEW − mean BASE."""
    diff = new["mean"] - base["mean"]
    vb, vn = base["sd"] ** 2 / base["n"], new["sd"] ** 2 / new["n"]
    se = float(np.sqrt(vb + vn))
    if se == 0.0:  # every repeat identical on both sides: the difference is exact
        return (0.0 if diff else 1.0), diff, diff
    p = stats.ttest_ind_from_stats(
        new["mean"], new["sd"], new["n"], base["mean"], base["sd"], base["n"], equal_var=False
    ).pvalue
    df = (vb + vn) ** 2 / (vb**2 / (base["n"] - 1) + vn**2 / (new["n"] - 1))
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    return float(p), diff - half, diff + half


def compare_one(base: pd.Series, new: pd.Series, threshold: float, alpha: float) -> dict[str, Any]:
    """The comparison columns of one configuration present on both sides."""
    ratio = new["mean"] / base["mean"]
    notes = []
    if pd.notna(base["global_batch"]) and pd.notna(new["global_batch"]) and base["global_batch"] != new["global_batch"]:
        notes.append(f"global batch differs ({base['global_batch']:g} vs {new['global_batch']:g})")
    if base["applied"] and new["applied"] and base["applied"] != new["applied"]:
        notes.append(f"plan differs ({base['applied']} vs {new['applied']})")
    if min(base["n"], new["n"]) < 2:
        p, low, high, verdict = np.nan, np.nan, np.nan, _direction(ratio, threshold, "?")
        notes.insert(0, NO_TEST)
    else:
        p, d_low, d_high = welch(base, new, alpha)
        low, high = 1 + d_low / base["mean"], 1 + d_high / base["mean"]
        verdict = _direction(ratio, threshold) if p < alpha else SAME
        if p < alpha and verdict == SAME:
            notes.append(f"significant, within ±{threshold:.0%}")
    return {
        "base_throughput": base["mean"],
        "base_repeats": int(base["n"]),
        "new_throughput": new["mean"],
        "new_repeats": int(new["n"]),
        "ratio": ratio,
        "ratio_ci_low": low,
        "ratio_ci_high": high,
        "p_value": p,
        "verdict": verdict,
        "note": "; ".join(notes),
    }


def _side(row: pd.Series, side: str) -> pd.Series:
    return pd.Series({k: row[f"{k}_{side}"] for k in ("n", "mean", "sd", "global_batch", "applied")})


def _one_side(row: pd.Series, side: str) -> dict[str, Any]:
    other = "new" if side == "base" else "base"
    return {
        f"{side}_throughput": row[f"mean_{side}"],
        f"{side}_repeats": int(row[f"n_{side}"]),
        f"{other}_repeats": 0,
        "verdict": ONLY_BASE if side == "base" else ONLY_NEW,
        "note": "",
    }


def compare(base: pd.DataFrame, new: pd.DataFrame, threshold: float = 0.03, alpha: float = 0.05) -> pd.DataFrame:
    """One row per configuration of either side (statistics from :func:`load_stats`)."""
    if not 0 < alpha < 1 or threshold < 0:
        raise ConfigError(f"need 0 < alpha < 1 and threshold >= 0, got alpha={alpha}, threshold={threshold}")
    both = base.merge(new, on=KEYS, how="outer", suffixes=("_base", "_new"), indicator=True)
    if not (both["_merge"] == "both").any():
        raise ConfigError(
            f"no configuration (model, hardware, strategy, world size) has ok runs on both sides: "
            f"BASE has {len(base)}, NEW has {len(new)}"
        )
    rows = []
    for _, r in both.iterrows():
        if r["_merge"] == "both":
            extra = compare_one(_side(r, "base"), _side(r, "new"), threshold, alpha)
        else:
            extra = _one_side(r, "base" if r["_merge"] == "left_only" else "new")
        rows.append({**{k: r[k] for k in KEYS}, **extra})
    return pd.DataFrame(rows, columns=COLUMNS)


def summary_line(table: pd.DataFrame, threshold: float, alpha: float) -> str:
    """One line: how many configurations got each verdict."""
    counts = table["verdict"].value_counts()
    order = [FASTER, SLOWER, SAME, FASTER + "?", SLOWER + "?", ONLY_BASE, ONLY_NEW]
    parts = [f"{counts[v]} {v}" for v in order if v in counts]
    compared = int(table["verdict"].isin([FASTER, SLOWER, SAME, FASTER + "?", SLOWER + "?"]).sum())
    return f"{compared} configurations compared: {', '.join(parts)} (alpha {alpha:g}, threshold ±{threshold:.1%})"


def format_table(table: pd.DataFrame) -> str:
    """The table for people: throughputs to 4 digits, ratio and interval to 3 decimals, blanks for NaN."""
    fmt = {c: "{:.4g}".format for c in ("base_throughput", "new_throughput", "p_value")}
    fmt |= {c: "{:.3f}".format for c in ("ratio", "ratio_ci_low", "ratio_ci_high")}
    shown = table.astype({"base_repeats": "Int64", "new_repeats": "Int64"}, errors="ignore")
    return shown.to_string(index=False, na_rep="", formatters=fmt)


def exit_status(table: pd.DataFrame, allow_missing: bool = False) -> int:
    """1 when any configuration is significantly slower beyond the threshold, or (unless
    ``allow_missing``) has ok runs in BASE only; else 0."""
    missing = not allow_missing and (table["verdict"] == ONLY_BASE).any()
    return int((table["verdict"] == SLOWER).any() or missing)
