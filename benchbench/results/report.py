"""The study report: one self-contained HTML file (inline CSS and SVG, no network fetches)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml
from markupsafe import Markup

from benchbench.models.registry import model_info
from benchbench.protocol.provenance import FIELDS
from benchbench.protocol.record import atomic_write_text, job_of
from benchbench.results.compare import COLUMNS, compare, load_stats
from benchbench.results.figures.captions import CAPTIONS
from benchbench.results.figures.svg import drawn_svg, inline_svg
from benchbench.results.findings import findings, sentence, summary_table
from benchbench.results.htmltable import data_table, definitions
from benchbench.results.prediction_section import prediction_section
from benchbench.results.records import study_records
from benchbench.results.tables import NOISY_CV, load_records, read_table
from benchbench.spec.config import ConfigError
from benchbench.spec.paths import COSTMODEL_PLOTS, PLOT_FORMATS, PREDICTION_TABLES, TABLES, StudyLayout

TEMPLATES = Path(__file__).parent / "templates"
#: The side-by-side table: a configuration's identity, then registered metrics (a test checks
#: each is in :data:`benchbench.spec.metrics.METRICS`).
SIDE_BY_SIDE_KEYS = ["model", "hardware", "strategy", "world_size", "dp", "tp", "pp"]
SIDE_BY_SIDE_METRICS = [
    "throughput",
    "throughput_ci_low",
    "throughput_ci_high",
    "throughput_cv",
    "speedup",
    "efficiency",
    "peak_mem_mb",
    "comm_bytes_per_step",
    "comm_bus_bytes_per_step",
    "exposed_comm_s",
    "exposed_comm_fraction",
    "bubble_fraction_measured",
    "bubble_fraction_simulated",
    "bubble_fraction_theoretical",
    "hfu",
    "mfu",
    "compile_time_s",
    "model_state_bytes",
    "model_state_bytes_est",
    "model_state_vs_est",
    "activation_bytes",
    "activation_bytes_est",
    "activation_vs_est",
    "verify_grad_rel_err",
    "loss_dev",
    "correct",
    "noisy",
    "applied",
]
#: Provenance shown in the report: every field of the record's env but the per-job wall time.
PROVENANCE_SHOWN = [f.name for f in FIELDS if f.name not in ("wall_time_s", "slurm_step_id", "slurm_nodelist", "batch")]


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
            "model": j.model,
            "arch": info.arch,
            "size": size,
            "params": info.params,
            "train_flops_per_sample": info.train_flops_per_sample,
            "global_batch": j.global_batch,
            "seq_len": j.seq_len or "",
        }
    return pd.DataFrame(list(rows.values()))


def _study_facts(records: list[dict[str, Any]], scaling: pd.DataFrame, fallback_study: str) -> dict[str, Any]:
    """What the report says about the study as a whole: its name, settings and counts."""
    count = {f"n_{s}": sum(r["status"] == s for r in records) for s in ("ok", "failed", "infeasible")}
    facts: dict[str, Any] = {"n_records": len(records), **count, "study": fallback_study, "scaling": "strong"}
    if not records:
        return facts
    first = job_of(records[0])
    return {
        **facts,
        "study": first.study,
        "steps": first.steps,
        "warmup": first.warmup_steps,
        "dtype": first.dtype,
        "seed": first.seed,
        "tolerance": first.loss_tolerance,
        "scaling": scaling["scaling"].iloc[0] if not scaling.empty else first.scaling,
        "repeats": max(job_of(r).repeat for r in records) + 1,
    }


def study_throughput(records: list[dict[str, Any]]) -> dict[str, float] | None:
    """How much of the study's wall time its timed steps took: ``timed_s`` (every record's timed
    steps), ``span_s`` (from the first job's start, ``created_at - env.wall_time_s``, to the last
    record's ``created_at``; 1 s resolution), ``jobs_s`` (the jobs' own end-to-end times), and the
    shares ``timed_s / span_s`` and ``timed_s / jobs_s``. None without a timed job."""
    timed = sum(sum(r.get("step_time_s") or []) for r in records)
    ran = [r for r in records if (r.get("env") or {}).get("wall_time_s") and r.get("created_at")]
    if not timed or not ran:
        return None
    ends = [datetime.fromisoformat(r["created_at"]).timestamp() for r in ran]
    starts = [end - r["env"]["wall_time_s"] for end, r in zip(ends, ran, strict=True)]
    span, jobs = max(ends) - min(starts), sum(r["env"]["wall_time_s"] for r in ran)
    return {"timed_s": timed, "span_s": span, "jobs_s": jobs, "share": timed / span, "share_of_jobs": timed / jobs}


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


#: Columns each table shows (the CSVs keep every column).
SCALING_SHOWN = [
    *SIDE_BY_SIDE_KEYS[:4],
    "scaling",
    "global_batch",
    "per_rank_batch",
    "repeats",
    "throughput",
    "throughput_cv",
    "speedup",
    "efficiency",
    "baseline",
    "noisy",
]
RUNS_SHOWN = [
    *SIDE_BY_SIDE_KEYS[:4],
    "repeat",
    "status",
    "samples_per_s",
    "step_time_median_s",
    "step_time_cv",
    "step_time_drift",
    "peak_mem_mb",
    "correct",
    "failure_kind",
]
CORRECTNESS_SHOWN = [
    *SIDE_BY_SIDE_KEYS[:4],
    "repeat",
    "verify_verdict",
    "correct",
    "exact",
    "verify_grad_rel_err",
    "verify_tolerance",
    "loss_dev",
    "applied",
]
THROUGHPUT_CI = {"throughput": ("throughput_ci_low", "throughput_ci_high")}


def _correctness(runs: pd.DataFrame, scaling: pd.DataFrame) -> pd.DataFrame:
    """Per ok job: the gate's verdict, the tables' ``correct``, exact or lossy, the composition."""
    if runs.empty or "status" not in runs:
        return pd.DataFrame()
    ok = runs[runs["status"] == "ok"].copy()
    lossy = ok["correct"] == "lossy"
    if not scaling.empty and "lossy" in scaling:
        flags = scaling.set_index(SIDE_BY_SIDE_KEYS[:4])["lossy"].astype(str).str.lower() == "true"
        keys = ok[SIDE_BY_SIDE_KEYS[:4]].itertuples(index=False, name=None)
        lossy |= pd.Series([bool(flags.get(k, False)) for k in keys], index=ok.index, dtype=bool)
    ok["exact"] = ["lossy" if x else "exact" for x in lossy]
    return ok


def _figures(plots: Iterable[str | Path], figures: str | Path | None) -> list[dict[str, Any]]:
    """Figures to show: those of ``figures.json`` with data (SVG beside it; by default the one
    beside the first SVG), else every SVG but the "no data" placeholders, captioned as
    :data:`benchbench.results.figures.captions.CAPTIONS` says."""
    svgs = [Path(p) for p in plots if Path(p).suffix == ".svg"]
    figures = figures or (svgs[0].parent / "figures.json" if svgs else None)
    try:
        listed = json.loads(Path(figures).read_text()) if figures and Path(figures).is_file() else None
    except (OSError, ValueError):
        listed = None  # unreadable: every SVG, as without one
    if isinstance(listed, list):
        where = Path(figures).parent
        return [
            {
                "name": f["name"],
                "caption": f.get("caption", f["name"]),
                "svg": Markup(inline_svg(where / f"{f['name']}.svg")),
            }
            for f in listed
            if f.get("has_data") and (where / f"{f['name']}.svg").is_file()
        ]
    drawn = [(p, drawn_svg(p)) for p in svgs]  # without figures.json: every SVG but the "no data" ones
    return [
        {"name": p.stem, "caption": CAPTIONS.get(p.stem, p.stem), "svg": Markup(svg)}
        for p, svg in drawn
        if svg is not None
    ]


def _frames(tables: Mapping[str, str | Path]) -> dict[str, pd.DataFrame]:
    # names stay text; an empty table (no ok runs) reads as empty;
    # a results folder from before a table existed has no file for it: read as empty
    return {n: read_table(tables[n]) if n in tables and Path(tables[n]).exists() else pd.DataFrame() for n in TABLES}


def _tables_html(frames: dict[str, pd.DataFrame], recs: list[dict[str, Any]], prefix: str) -> dict[str, Markup]:
    """Every data table of one study, as markup (ids ``t-<prefix><name>``)."""
    scaling, runs = frames["scaling"], frames["runs"]
    side_cols = [c for c in SIDE_BY_SIDE_KEYS + SIDE_BY_SIDE_METRICS if c not in THROUGHPUT_CI["throughput"]]
    return {
        "models_html": data_table(_models(recs), f"{prefix}models", filter_box=False),
        "side_html": data_table(scaling, f"{prefix}side", side_cols, THROUGHPUT_CI),
        "scaling_html": data_table(scaling, f"{prefix}scaling", SCALING_SHOWN, THROUGHPUT_CI),
        "correctness_html": data_table(_correctness(runs, scaling), f"{prefix}correctness", CORRECTNESS_SHOWN),
        "runs_html": data_table(runs, f"{prefix}runs", RUNS_SHOWN),
        "failure_counts_html": data_table(frames["failures"], f"{prefix}failures", filter_box=False),
        "rejected_html": data_table(frames["rejected"], f"{prefix}rejected", filter_box=False),
        "dropped_html": data_table(frames["dropped"], f"{prefix}dropped"),
    }


def study_section(
    records: Iterable[str | Path],
    tables: Mapping[str, str | Path],
    fallback_study: str,
    label: str = "",
    prefix: str = "",
    prediction: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the page says about one results folder: facts, findings, tables, failures, and the
    Prediction section (``prediction``: the keyword arguments of
    :func:`benchbench.results.prediction_section.prediction_section`; none given: the section says so)."""
    recs = load_records(records)
    frames = _frames(tables)
    found = findings(frames["scaling"], frames["runs"], frames["failures"])
    return {
        **_study_facts(recs, frames["scaling"], fallback_study),
        "label": label,
        "prefix": prefix,
        "n_dropped": len(frames["dropped"]),
        "findings": [sentence(f) for f in found],
        "findings_html": data_table(summary_table(found), f"{prefix}findings", filter_box=False),
        **_tables_html(frames, recs, prefix),
        "provenance": _provenance(recs),
        "failures": _failed_jobs(recs),
        "oversubscribed": any(r.get("env", {}).get("oversubscribed") for r in recs),
        "throughput": study_throughput(recs),
        "prediction": prediction_section(**{"tables": {}, **(prediction or {})}, prefix=prefix),
    }


def _study_text(study: str | Mapping[str, Any] | None) -> str:
    """The study file as YAML (from a mapping or its JSON or YAML text); empty when not given."""
    if not study:
        return ""
    data = yaml.safe_load(study) if isinstance(study, str) else dict(study)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def render(out: str | Path, sections: list[dict[str, Any]], **page: Any) -> Path:
    """Write the page: ``sections`` (:func:`study_section`) and page-wide ``page`` values."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html", "j2"])
    )
    title = " + ".join(dict.fromkeys(s["study"] for s in sections))
    page.setdefault("figures", [])
    page.setdefault("comparisons", [])
    html = env.get_template("report.html.j2").render(
        title=title,
        sections=sections,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        noisy_pct=int(NOISY_CV * 100),
        definitions=definitions(),
        captions=CAPTIONS,
        **page,
    )
    atomic_write_text(out, html)
    return Path(out)


def build_report(
    *,
    records: Iterable[str | Path],
    tables: Mapping[str, str | Path],
    plots: Iterable[str | Path],
    out: str | Path,
    description: str = "",
    study: str | Mapping[str, Any] | None = None,
    figures: str | Path | None = None,
    calibrations: Iterable[str | Path] = (),
) -> Path:
    """Write the self-contained HTML report to ``out`` from the study's records, its tables
    (names: :data:`benchbench.spec.paths.TABLES` and ``PREDICTION_TABLES``), its plots (SVGs inlined;
    only those with data when ``figures`` names a figures.json; the cost model's ``busbw`` and
    ``predicted`` in the Prediction section), its ``calibrations`` and the study file (``study``: a
    mapping or its JSON)."""
    plots = list(plots)
    prediction = {
        "tables": {n: tables[n] for n in PREDICTION_TABLES if n in tables},
        "calibrations": calibrations,
        "plots": [p for p in plots if Path(p).stem in COSTMODEL_PLOTS],
    }
    plots = [p for p in plots if Path(p).stem not in COSTMODEL_PLOTS]
    section = study_section(records, tables, Path(out).parent.parent.name, prediction=prediction)
    return render(
        out, [section], description=description, figures=_figures(plots, figures), study_text=_study_text(study)
    )


def _comparisons(dirs: list[Path]) -> list[dict[str, Any]]:
    """A comparison table (:func:`benchbench.results.compare.compare`) per pair of folders sharing
    configurations; for any other pair, a one-line ``note`` why there is none."""
    out = []
    for i, a in enumerate(dirs):
        for j, b in enumerate(dirs[i + 1 :], start=i + 1):
            try:
                table = compare(load_stats(a)[0], load_stats(b)[0])
            except ConfigError as e:  # nothing in common, or unreadable: say so, and go on
                out.append({"base": a.name, "new": b.name, "note": f"no comparison of {a.name} and {b.name}: {e}"})
                continue
            shared = table[~table["verdict"].str.startswith("only in")]
            out.append({"base": a.name, "new": b.name, "html": data_table(shared, f"cmp-{i}-{j}", COLUMNS)})
    return out


def build_merged_report(study_dirs: list[str | Path], out: str | Path, description: str = "") -> Path:
    """One page for several results folders: a section each (findings and tables, labelled by
    folder), and a comparison table for each pair holding the same configurations."""
    dirs = [Path(d) for d in study_dirs]
    sections, figures = [], []
    for i, d in enumerate(dirs):
        layout = StudyLayout(d.name, d.parent)
        tables = {n: layout.table(n) for n in TABLES}
        sections.append(
            study_section(
                study_records(layout),
                tables,
                d.name,
                label=str(d),
                prefix=f"s{i}-",
                prediction=layout_prediction(layout),
            )
        )
        figs = _figures([p for p in layout.plots() if p.suffix == ".svg" and p.exists()], d / "plots/figures.json")
        figures += [{**f, "name": f"s{i}-{f['name']}", "caption": f"{d}: {f['caption']}"} for f in figs]
    return render(out, sections, description=description, figures=figures, comparisons=_comparisons(dirs))


def layout_prediction(layout: StudyLayout) -> dict[str, Any]:
    """The Prediction section's inputs where a study's layout puts them (what exists of them)."""
    cal_dir = layout.calibration_dir
    return {
        "tables": {n: layout.table(n) for n in PREDICTION_TABLES},
        "calibrations": sorted(cal_dir.glob("*.json")) if cal_dir.is_dir() else [],
        "plots": [p for p in layout.costmodel_plots() if p.suffix == ".svg" and p.exists()],
    }


def study_inputs(layout: StudyLayout) -> dict[str, Any]:
    """:func:`build_report`'s inputs where a study's layout puts them: its records, tables (the
    prediction tables included), plots that exist (the study's SVGs, then the cost model's),
    calibrations, figures.json and the report's path."""
    prediction = layout_prediction(layout)
    return {
        "records": study_records(layout),
        "tables": {n: layout.table(n) for n in TABLES} | prediction["tables"],
        "plots": [p for p in layout.plots() if p.suffix == f".{PLOT_FORMATS[0]}" and p.exists()] + prediction["plots"],
        "calibrations": prediction["calibrations"],
        "out": layout.report,
        "figures": layout.figures_index,
    }
