"""The study report: one self-contained HTML file (inline CSS and SVG, no network fetches)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from benchbench.analysis import NOISY_CV, load_records
from benchbench.layout import TABLES, StudyLayout
from benchbench.models import model_info
from benchbench.provenance import FIELDS
from benchbench.record import atomic_write_text, job_of

TEMPLATES = Path(__file__).parent / "templates"
#: The side-by-side table: a configuration's identity, then registered metrics (a test checks
#: each is in :data:`benchbench.metrics.METRICS`).
SIDE_BY_SIDE_KEYS = ["model", "hardware", "strategy", "world_size", "dp", "tp", "pp"]
SIDE_BY_SIDE_METRICS = [
    "throughput", "throughput_ci_low", "throughput_ci_high", "throughput_cv", "speedup", "efficiency",
    "peak_mem_mb", "comm_bytes_per_step", "comm_bus_bytes_per_step", "exposed_comm_s", "exposed_comm_fraction",
    "bubble_fraction_measured", "bubble_fraction_simulated", "bubble_fraction_theoretical", "hfu", "mfu",
    "model_state_bytes", "model_state_bytes_est", "model_state_vs_est", "activation_bytes", "activation_bytes_est",
    "activation_vs_est",
    "verify_grad_rel_err", "loss_dev", "correct", "noisy", "applied",
]  # fmt: skip
#: Provenance shown in the report: every field of the record's env but the per-job wall time.
PROVENANCE_SHOWN = [f.name for f in FIELDS if f.name not in ("wall_time_s", "slurm_step_id", "slurm_nodelist")]


def _table(df: pd.DataFrame, float_fmt: str = "{:.4g}") -> str:
    if df.empty:
        return ""
    return df.to_html(index=False, border=0, na_rep="", float_format=lambda v: float_fmt.format(v), escape=True)


def _provenance(records: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k in PROVENANCE_SHOWN:
        seen: list[str] = []
        for r in records:
            v = r.get("env", {}).get(k)
            for item in v if isinstance(v, list) else [v]:
                if item is not None and str(item) not in seen:
                    seen.append(str(item))
        out[k] = ", ".join(seen) if seen else "—"
    return out


def _models(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = {}
    for j in map(job_of, records):
        if j.model in rows:
            continue
        info = model_info(j.model_cfg)
        size = ", ".join(f"{k}={v}" for k, v in j.model_cfg.items() if k != "arch")
        rows[j.model] = {
            "model": j.model, "arch": info.arch, "size": size, "params (M)": info.params / 1e6,
            "train GFLOP/sample": info.train_flops_per_sample / 1e9, "global batch": j.global_batch,
            "seq len": j.seq_len or "",
        }  # fmt: skip
    return pd.DataFrame(list(rows.values()))


def _inline_svg(path: Path) -> str:
    text = path.read_text()
    return text[text.find("<svg") :]  # drop the XML prolog: inline SVG


def _side_by_side(scaling: pd.DataFrame) -> pd.DataFrame:
    if scaling.empty:
        return scaling
    side = scaling[[c for c in SIDE_BY_SIDE_KEYS + SIDE_BY_SIDE_METRICS if c in scaling.columns]].copy()
    for col in ("comm_bytes_per_step", "comm_bus_bytes_per_step", "model_state_bytes", "model_state_bytes_est",
                "activation_bytes", "activation_bytes_est"):
        if col in side:
            side[col] = side[col] / 2**20
            side = side.rename(columns={col: col.replace("bytes", "MiB")})
    return side


def _study_facts(records: list[dict[str, Any]], scaling: pd.DataFrame, fallback_study: str) -> dict[str, Any]:
    """What the report says about the study as a whole: its name, settings and counts."""
    count = {f"n_{s}": sum(r["status"] == s for r in records) for s in ("ok", "failed", "infeasible")}
    facts: dict[str, Any] = {"n_records": len(records), **count, "study": fallback_study, "scaling": "strong"}
    if not records:
        return facts
    first = job_of(records[0])
    return {
        **facts, "study": first.study, "steps": first.steps, "warmup": first.warmup_steps, "dtype": first.dtype,
        "seed": first.seed, "tolerance": first.loss_tolerance,
        "scaling": scaling["scaling"].iloc[0] if not scaling.empty else first.scaling,
        "repeats": max(job_of(r).repeat for r in records) + 1,
    }  # fmt: skip


def _failed_jobs(records: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Each job that did not finish ok: its id, status, failure kind and one-line message, and the
    longer text (the failing rank's log tail, else the error)."""
    out = []
    for r in records:
        if r["status"] == "ok":
            continue
        failure = r.get("failure") or {}
        kind = failure.get("kind") or ("infeasible" if r["status"] == "infeasible" else "unknown")
        message = failure.get("message") or (r.get("error") or "").split("\n")[0]
        detail = failure.get("log_tail") or r.get("error") or ""
        out.append({"id": job_of(r).id, "status": r["status"], "kind": kind, "message": message, "detail": detail})
    return out


def build_report(
    *,
    records: Iterable[str | Path],
    tables: Mapping[str, str | Path],
    plots: Iterable[str | Path],
    out: str | Path,
    description: str = "",
) -> Path:
    """Write the self-contained HTML report to ``out`` from the study's records, its tables
    (names: :data:`benchbench.layout.TABLES`) and its plots (SVG files are inlined)."""
    from benchbench.plots import read_table  # names stay text; an empty table (no ok runs) reads as empty

    recs = load_records(records)
    # a results folder from before a table existed has no file for it: read as empty
    frames = {n: read_table(tables[n]) if n in tables and Path(tables[n]).exists() else pd.DataFrame() for n in TABLES}
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html", "j2"])
    )
    page = env.get_template("report.html.j2").render(
        **_study_facts(recs, frames["scaling"], Path(out).parent.parent.name),
        description=description,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        n_dropped=len(frames["dropped"]),
        noisy_pct=int(NOISY_CV * 100),
        models_html=Markup(_table(_models(recs))),
        provenance=_provenance(recs),
        scaling_html=Markup(_table(frames["scaling"])),
        side_html=Markup(_table(_side_by_side(frames["scaling"]))),
        runs_html=Markup(_table(frames["runs"].drop(columns=["study"], errors="ignore"))),
        dropped_html=Markup(_table(frames["dropped"])),
        failure_counts_html=Markup(_table(frames["failures"])),
        rejected_html=Markup(_table(frames["rejected"])),
        plots=[Markup(_inline_svg(Path(p))) for p in plots if Path(p).suffix == ".svg"],
        failures=_failed_jobs(recs),
        oversubscribed=any(r.get("env", {}).get("oversubscribed") for r in recs),
    )
    atomic_write_text(out, page)
    return Path(out)


def study_records(layout: StudyLayout) -> list[Path]:
    """The ok-or-latest record files under a study's ``raw/`` folder: not the ``.failed.json``
    ones, nor anything in a dot-folder (a running job's scratch space beside its record)."""
    hidden = lambda p: any(part.startswith(".") for part in p.relative_to(layout.raw).parts)  # noqa: E731
    return sorted(p for p in layout.raw.rglob("*.json") if not p.name.endswith(".failed.json") and not hidden(p))
