"""The answer first: per model x hardware x world size, which correct strategy was fastest, by how
much over the runner-up and whether that is significant, the best scaling efficiency, and which
strategies failed, mismatched the gate or were noisy. Pure functions on the study's tables.

A strategy is *correct* when the tables mark it so: ``correct`` is ``match`` or ``lossy`` (a lossy
plan within its own bound; a lossy plan past it is ``MISMATCH``). Significance: Welch's t-test
(:func:`benchbench.results.compare.welch`) over the repeats' ``samples_per_s`` (runs.csv), else over the
scaling table's summary statistics (older results without runs.csv).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from benchbench.results.compare import repeat_stats, scaling_stats, welch
from benchbench.results.htmltable import shown, unit_shown

GROUP = ["model", "hardware", "world_size"]
CORRECT = ("match", "lossy")
ALPHA = 0.05
NOT_TESTED = "1 repeat: not tested"
SUMMARY_COLUMNS = [
    *GROUP,
    "fastest",
    "throughput",
    "runner_up",
    "margin",
    "p_value",
    "significance",
    "best_efficiency",
    "failed",
    "mismatched",
    "noisy",
]


@dataclass
class Finding:
    """What one model x hardware x world size says."""

    model: str
    hardware: str
    world_size: int
    winner: str = ""
    winner_lossy: bool = False  # the winner is a lossy (compressing) plan within its bound
    throughput: float = float("nan")
    runner_up: str = ""
    ratio: float = float("nan")
    p_value: float = float("nan")
    significance: str = ""  # significant | not significant | 1 repeat: not tested | "" (no runner-up)
    best_efficiency: float = float("nan")
    best_efficiency_strategy: str = ""
    failed: dict[str, list[str]] = field(default_factory=dict)  # failure kind -> strategies
    mismatched: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)  # ok but neither match nor lossy (no reference)
    noisy: list[str] = field(default_factory=list)


def _stats(runs: pd.DataFrame, scaling: pd.DataFrame) -> pd.DataFrame:
    """Per configuration n, mean and sd of the repeat figures: from runs, else from scaling."""
    if not runs.empty and {"status", "samples_per_s", "strategy"} <= set(runs.columns):
        return repeat_stats(runs)
    if not scaling.empty and {"throughput", "throughput_cv", "repeats"} <= set(scaling.columns):
        return scaling_stats(scaling)
    return pd.DataFrame(columns=["model", "hardware", "strategy", "world_size", "n", "mean", "sd"])


def _stat_of(stats: pd.DataFrame, key: tuple, strategy: str) -> pd.Series | None:
    m, h, w = key
    hit = stats[
        (stats["model"] == m) & (stats["hardware"] == h) & (stats["world_size"] == w) & (stats["strategy"] == strategy)
    ]
    return hit.iloc[0] if len(hit) else None


def _significance(f: Finding, stats: pd.DataFrame, key: tuple, alpha: float) -> None:
    """Fill ``p_value`` and ``significance`` of the winner against the runner-up."""
    new, base = _stat_of(stats, key, f.winner), _stat_of(stats, key, f.runner_up)
    if new is None or base is None or min(new["n"], base["n"]) < 2:
        f.significance = NOT_TESTED
        return
    f.p_value = welch(base, new, alpha)[0]
    f.significance = "significant" if f.p_value < alpha else "not significant"


def _ranked(rows: pd.DataFrame, f: Finding, stats: pd.DataFrame, key: tuple, alpha: float) -> None:
    """Winner, runner-up, margin and best efficiency among the correct strategies ``rows``."""
    correct = rows[rows["correct"].isin(CORRECT) & rows["throughput"].notna()]
    correct = correct.sort_values(["throughput", "strategy"], ascending=[False, True])
    if correct.empty:
        return
    f.winner, f.throughput = str(correct["strategy"].iloc[0]), float(correct["throughput"].iloc[0])
    flag = str(correct["lossy"].iloc[0]).lower() == "true" if "lossy" in correct else False
    f.winner_lossy = correct["correct"].iloc[0] == "lossy" or flag
    if len(correct) > 1:
        f.runner_up = str(correct["strategy"].iloc[1])
        f.ratio = f.throughput / float(correct["throughput"].iloc[1])
        _significance(f, stats, key, alpha)
    eff = correct.dropna(subset=["efficiency"]) if "efficiency" in correct else correct.iloc[:0]
    if not eff.empty:
        best = eff.loc[eff["efficiency"].idxmax()]
        f.best_efficiency, f.best_efficiency_strategy = float(best["efficiency"]), str(best["strategy"])


def _keys(scaling: pd.DataFrame, failures: pd.DataFrame) -> list[tuple]:
    keys = set()
    for df in (scaling, failures):
        if not df.empty and set(GROUP) <= set(df.columns):
            keys |= {(str(m), str(h), int(w)) for m, h, w in df[GROUP].itertuples(index=False)}
    return sorted(keys)


def _of(df: pd.DataFrame, key: tuple) -> pd.DataFrame:
    if df.empty or not set(GROUP) <= set(df.columns):
        return df.iloc[:0]
    return df[
        (df["model"].astype(str) == key[0])
        & (df["hardware"].astype(str) == key[1])
        & (df["world_size"].astype(int) == key[2])
    ]


def finding(
    key: tuple, scaling: pd.DataFrame, failures: pd.DataFrame, stats: pd.DataFrame, alpha: float = ALPHA
) -> Finding:
    """The finding of one (model, hardware, world size)."""
    f = Finding(*key)
    rows = _of(scaling, key).copy()
    if not rows.empty:
        rows["correct"] = rows["correct"] if "correct" in rows else "no reference"
        _ranked(rows, f, stats, key, alpha)
        f.mismatched = sorted(rows.loc[rows["correct"] == "MISMATCH", "strategy"].astype(str))
        f.unverified = sorted(rows.loc[~rows["correct"].isin([*CORRECT, "MISMATCH"]), "strategy"].astype(str))
        if "noisy" in rows:
            f.noisy = sorted(rows.loc[rows["noisy"].astype(str).str.lower() == "true", "strategy"].astype(str))
    for kind, grp in _of(failures, key).groupby("kind", sort=True) if not failures.empty else []:
        f.failed[str(kind)] = sorted(set(grp["strategy"].astype(str)))
    return f


def findings(scaling: pd.DataFrame, runs: pd.DataFrame, failures: pd.DataFrame, alpha: float = ALPHA) -> list[Finding]:
    """One :class:`Finding` per model x hardware x world size in the scaling or failures table."""
    stats = _stats(runs, scaling)
    return [finding(k, scaling, failures, stats, alpha) for k in _keys(scaling, failures)]


def _names(items: list[str]) -> str:
    return ", ".join(items)


def _margin(f: Finding) -> str:
    if not f.runner_up:
        return "the only correct strategy"
    test = f"{f.significance}, p = {f.p_value:.2g}" if np.isfinite(f.p_value) else f.significance
    return f"{f.ratio:.2f}× {f.runner_up} ({test})"


def sentence(f: Finding) -> Markup:
    """One short paragraph (HTML, every name escaped), e.g. "gpt-small on cpu-local at 2 ranks:
    <b>ddp</b> is fastest, 1.42× dp-naive (significant, p = 0.003); best efficiency 71% (ddp).";
    a lossy winner reads "<b>ddp-fp16</b> (lossy) is fastest"."""
    head = escape(f"{f.model} on {f.hardware} at {f.world_size} rank{'s' if f.world_size != 1 else ''}: ")
    if f.winner:
        lossy = " (lossy)" if f.winner_lossy else ""
        body = Markup("<b>{}</b>{} is fastest, {}").format(f.winner, lossy, _margin(f))
        if np.isfinite(f.best_efficiency):  # in the summary table's unit (%), as it shows it
            eff = shown("best_efficiency", f.best_efficiency)[0] + unit_shown("best_efficiency")
            body += escape(f"; best efficiency {eff} ({f.best_efficiency_strategy})")
        body += Markup(".")
    elif f.mismatched or f.unverified:
        body = escape("no strategy passed the correctness gate.")
    else:
        body = escape("no strategy ran ok.")
    tail = [f"{_names(v)} failed ({k})" for k, v in f.failed.items()]
    tail += [f"{_names(f.mismatched)} mismatched the gate"] if f.mismatched else []
    tail += [f"{_names(f.unverified)} had no reference to check against"] if f.unverified else []
    tail += [f"{_names(f.noisy)} {'was' if len(f.noisy) == 1 else 'were'} noisy"] if f.noisy else []
    return head + body + escape("".join(f" {t}." for t in tail))


def summary_table(found: list[Finding]) -> pd.DataFrame:
    """One row per finding: the compact table under the sentences."""
    rows = [
        {
            "model": f.model,
            "hardware": f.hardware,
            "world_size": f.world_size,
            "fastest": f.winner or "—",
            "throughput": f.throughput,
            "runner_up": f.runner_up,
            "margin": f.ratio,
            "p_value": f.p_value,
            "significance": f.significance,
            "best_efficiency": f.best_efficiency,
            "failed": "; ".join(f"{_names(v)} ({k})" for k, v in f.failed.items()),
            "mismatched": _names(f.mismatched),
            "noisy": _names(f.noisy),
        }
        for f in found
    ]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
