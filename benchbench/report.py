"""The study report: one self-contained HTML file (inline CSS and SVG, no network fetches)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from benchbench.analysis import NOISY_CV, load_records
from benchbench.models import model_info
from benchbench.record import atomic_write_text

TEMPLATES = Path(__file__).parent / "templates"
SIDE_BY_SIDE = [
    "model", "hardware", "strategy", "world_size", "dp", "tp", "pp", "throughput", "speedup", "efficiency",
    "peak_mem_mb", "comm_bytes_per_step", "exposed_comm_fraction", "bubble_fraction_measured",
    "bubble_fraction_theoretical", "loss_dev", "correct", "noisy",
]  # fmt: skip


def _table(df: pd.DataFrame, float_fmt: str = "{:.4g}") -> str:
    if df.empty:
        return ""
    return df.to_html(index=False, border=0, na_rep="", float_format=lambda v: float_fmt.format(v), escape=True)


def _provenance(records: list[dict[str, Any]]) -> dict[str, str]:
    keys = ["torch", "python", "backend", "device", "device_names", "hosts", "ranks", "threads_per_rank",
            "cpu_count", "oversubscribed", "launcher", "git_commit", "slurm_job_id"]  # fmt: skip
    out: dict[str, str] = {}
    for k in keys:
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
    for r in records:
        j = r["job"]
        if j["model"] in rows:
            continue
        info = model_info(j["model_cfg"])
        size = ", ".join(f"{k}={v}" for k, v in j["model_cfg"].items() if k != "arch")
        rows[j["model"]] = {
            "model": j["model"], "arch": info.arch, "size": size, "params (M)": info.params / 1e6,
            "train GFLOP/sample": info.train_flops_per_sample / 1e9, "global batch": j["global_batch"],
            "seq len": j["seq_len"] or "",
        }  # fmt: skip
    return pd.DataFrame(list(rows.values()))


def build_report(
    study_dir: str | Path, record_paths: Iterable[str | Path] | None = None, description: str = ""
) -> Path:
    """Write ``<study_dir>/report/index.html`` from its tables, plots and records."""
    study_dir = Path(study_dir)
    if record_paths is None:
        record_paths = sorted(p for p in (study_dir / "raw").rglob("*.json") if not p.name.endswith(".failed.json"))
    records = load_records(record_paths)
    tables = {n: pd.read_csv(study_dir / "tables" / f"{n}.csv") for n in ("runs", "scaling", "dropped")}
    scaling = tables["scaling"]
    first = records[0]["job"] if records else {}
    failures = [
        {"id": r["job"]["id"], "status": r["status"], "error": r["error"] or ""} for r in records if r["status"] != "ok"
    ]
    plots = []
    for name in ("strategies", "throughput", "efficiency"):
        svg = study_dir / "plots" / f"{name}.svg"
        if svg.exists():
            text = svg.read_text()
            plots.append(text[text.find("<svg") :])  # drop the XML prolog: inline SVG
    runs = tables["runs"].drop(columns=["study"])
    side = scaling[[c for c in SIDE_BY_SIDE if c in scaling.columns]].copy() if not scaling.empty else scaling
    if "comm_bytes_per_step" in side:
        side["comm_bytes_per_step"] = side["comm_bytes_per_step"] / 2**20
        side = side.rename(columns={"comm_bytes_per_step": "comm_MiB_per_step"})
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html", "j2"])
    )
    page = env.get_template("report.html.j2").render(
        study=first.get("study", study_dir.name),
        description=description,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        n_records=len(records),
        n_ok=sum(r["status"] == "ok" for r in records),
        n_failed=sum(r["status"] == "failed" for r in records),
        n_infeasible=sum(r["status"] == "infeasible" for r in records),
        n_dropped=len(tables["dropped"]),
        scaling=scaling["scaling"].iloc[0] if not scaling.empty else first.get("scaling", "strong"),
        steps=first.get("steps"),
        warmup=first.get("warmup_steps"),
        repeats=max((r["job"]["repeat"] for r in records), default=0) + 1,
        dtype=first.get("dtype"),
        seed=first.get("seed"),
        tolerance=first.get("loss_tolerance", 1e-5),
        noisy_pct=int(NOISY_CV * 100),
        models_html=Markup(_table(_models(records))),
        provenance=_provenance(records),
        scaling_html=Markup(_table(scaling)),
        side_html=Markup(_table(side)),
        runs_html=Markup(_table(runs)),
        dropped_html=Markup(_table(tables["dropped"])),
        plots=[Markup(p) for p in plots],
        failures=failures,
        oversubscribed=any(r.get("env", {}).get("oversubscribed") for r in records),
    )
    out = study_dir / "report" / "index.html"
    atomic_write_text(out, page)
    return out
