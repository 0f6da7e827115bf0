"""Every valid study ends with its tables, every plot file and a report: plots and the report on the
shapes of table that small studies give (no ok run, one row, no baseline, one world size), and
generated studies (Hypothesis) run through the real workflow.

A study whose every combination is dropped is refused before anything runs (``no job to run``,
with each combination's reason; tests/test_bad_input.py), not run into an empty report."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from benchbench.launch.run_job import run_job
from benchbench.results.figures.study import (
    NO_BASELINE,
    NO_COMPRESSION,
    NO_OK_RUNS,
    NO_PEAK_MEMORY,
    NO_PIPELINE,
    NO_STEP_TIMES,
    plot_scaling,
)
from benchbench.results.report import build_report
from benchbench.results.tables import aggregate, read_table
from benchbench.spec.config import ROOT, check_config
from benchbench.spec.paths import PLOT_FORMATS, PLOTS, TABLES, StudyLayout
from benchbench.study import expand
from tests.helpers.jobs import make_test_job

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
ALL_PLOTS = [f"{n}.{f}" for n in PLOTS for f in PLOT_FORMATS]


def _row(model: str = "m", strategy: str = "ddp", ws: int = 2, throughput: float = 100.0, **kw: object) -> dict:
    """One scaling-table row with the columns the plots read."""
    row = {
        "model": model,
        "hardware": "cpu-local",
        "strategy": strategy,
        "world_size": ws,
        "throughput": throughput,
        "speedup": float("nan"),
        "efficiency": float("nan"),
        "model_state_bytes": 4096.0,
        "model_state_bytes_est": 4000.0,
    }
    return {**row, **kw}


#: The figures these rows never have the data for (no step times, pipeline, compression or peak memory).
NOT_IN_ROWS = {
    "breakdown": NO_STEP_TIMES,
    "bubble": NO_PIPELINE,
    "compression": NO_COMPRESSION,
    "pareto": NO_PEAK_MEMORY,
}
#: Rows with the data of every figure.
EVERY_FIGURE = [
    _row(
        strategy="single",
        ws=1,
        speedup=1.0,
        efficiency=1.0,
        step_time_median_s=0.1,
        peak_mem_mb=100.0,
        comm_bytes_per_step=0.0,
        loss_dev=0.0,
    ),
    _row(
        strategy="ddp-powersgd",
        ws=2,
        speedup=1.5,
        efficiency=0.75,
        step_time_median_s=0.07,
        peak_mem_mb=90.0,
        comm_bytes_per_step=1e5,
        loss_dev=0.01,
        lossy=True,
    ),
    _row(
        strategy="pp-gpipe",
        ws=2,
        speedup=1.2,
        efficiency=0.6,
        step_time_median_s=0.08,
        peak_mem_mb=60.0,
        comm_bytes_per_step=1e4,
        loss_dev=0.0,
        bubble_fraction_measured=0.3,
        pp=2,
        applied="pipeline(ScheduleGPipe, stages=2, here=[0], micro-batches=4) → AdamW",
    ),
]
SHAPES = {
    "no-ok-runs": ([], dict.fromkeys(PLOTS, NO_OK_RUNS)),
    "one-row-no-baseline": ([_row()], {"efficiency": NO_BASELINE, **NOT_IN_ROWS}),
    "only-world-size-1": ([_row(strategy="single", ws=1, speedup=1.0, efficiency=1.0)], NOT_IN_ROWS),
    "baseline-for-some": (
        [
            _row(strategy="single", ws=1, speedup=1.0, efficiency=1.0),
            _row(ws=2, speedup=1.5, efficiency=0.75),
            _row(model="m2", ws=2),
        ],
        NOT_IN_ROWS,
    ),
    "names-that-look-like-values": (
        [_row(model="NA"), _row(model="1", strategy="1e3", ws=1)],
        {"efficiency": NO_BASELINE, **NOT_IN_ROWS},
    ),
    "no-memory-figures": (
        [_row(model_state_bytes=None, model_state_bytes_est=None, speedup=1.0, efficiency=0.5)],
        {"memory": "no memory figures", **NOT_IN_ROWS},
    ),
    "every-figure": (EVERY_FIGURE, {}),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_plot_file_is_written_for_every_shape_of_table(tmp_path, shape):
    rows, no_data = SHAPES[shape]
    csv = tmp_path / "scaling.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)  # no rows: an empty file, as aggregate writes it
    outputs = [tmp_path / "plots" / p for p in ALL_PLOTS]
    assert sorted(plot_scaling(read_table(csv), outputs)) == sorted(outputs)
    for name in PLOTS:
        svg = (tmp_path / "plots" / f"{name}.svg").read_text()
        assert (tmp_path / "plots" / f"{name}.png").stat().st_size > 1000
        assert "could not draw" not in svg
        assert ("no data: " in svg) == (name in no_data), name
        assert no_data.get(name, "")[:40].replace("'", "&#x27;") in svg


def test_names_stay_text_when_read_back(tmp_path):
    csv = tmp_path / "scaling.csv"
    pd.DataFrame([_row(model="NA"), _row(model="1", strategy="nan")]).to_csv(csv, index=False)
    assert read_table(csv)[["model", "strategy"]].values.tolist() == [["NA", "ddp"], ["1", "nan"]]
    csv.write_text("")
    assert read_table(csv).empty


def test_report_when_no_job_ran_ok(tmp_path):
    """Only infeasible records: empty scaling table, "no data" plots, and a report listing why."""
    layout = StudyLayout("s", tmp_path)
    records = [
        run_job(make_test_job(s, 2), layout.raw / f"{s}.json", f"cannot run {s} <here>")[1] for s in ("ddp", "fsdp")
    ]
    tables = {n: layout.table(n) for n in TABLES}
    aggregate(records, tables, "strong", [])
    plots = plot_scaling(read_table(tables["scaling"]), layout.plots())
    out = build_report(records=records, tables=tables, plots=plots, out=layout.report, description="<i>x</i> & y")
    html = out.read_text()
    assert 'id="no-ok-runs"' in html and "0 ok, 0 failed, 2 infeasible" in html
    assert "cannot run fsdp &lt;here&gt;" in html and "&lt;i&gt;x&lt;/i&gt; &amp; y" in html
    svgs = [p for p in plots if p.suffix == ".svg"]
    assert len(svgs) == len(PLOTS) and all("no data: no ok runs" in p.read_text() for p in svgs)
    assert "<figure" not in html  # a figure without data is written, but not shown in the report


def test_report_cli_accepts_an_empty_description(tmp_path):
    """The report rule passes ``--description=`` for a study without one."""
    from benchbench.cli import main as cli

    layout = StudyLayout("s", tmp_path)
    rec = run_job(make_test_job("ddp", 2), layout.raw / "a.json", "infeasible here")[1]
    tables = [str(layout.table(n)) for n in TABLES]
    aggregate([rec], dict(zip(TABLES, tables, strict=True)), "strong", [])
    args = ["report", "--records", str(rec), "--tables", *tables, "--out", str(layout.report), "--description="]
    assert cli.main(args) == 0 and layout.report.exists()


# ---- generated studies through the real workflow ------------------------------------------------

#: Presets that run at tiny sizes on CPU (gloo); tp and pp on an mlp, or a plan a size does not
#: fit, are dropped with a reason, which the report lists.
PRESETS_ON_CPU = ["single", "dp-naive", "ddp", "ddp-static", "ddp-accum", "zero1", "fsdp", "tp", "pp-gpipe"]
TINY_MODELS = {
    "gpt": {"arch": "gpt", "layers": 2, "hidden": 16, "heads": 2, "seq_len": 8, "vocab": 32},
    "mlp": {"arch": "mlp", "width": 16, "depth": 1, "out_dim": 2},
}
NAMES = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,7}", fullmatch=True)
MAX_JOBS = 3  # each bench job starts torch in every rank: seconds each on two cores


@st.composite
def studies(draw: st.DrawFn) -> dict:
    """A minimal valid study: the required keys, sometimes steps / warm-up / description."""
    archs = draw(st.lists(st.sampled_from(list(TINY_MODELS)), min_size=1, max_size=2, unique=True))
    names = draw(st.lists(NAMES, min_size=len(archs), max_size=len(archs), unique_by=str.lower))
    batches = draw(st.lists(st.sampled_from([4, 8]), min_size=len(archs), max_size=len(archs)))
    study = {
        "study": draw(NAMES),
        "models": {n: dict(TINY_MODELS[a], batch_size=b) for n, a, b in zip(names, archs, batches, strict=True)},
        "strategies": draw(st.lists(st.sampled_from(PRESETS_ON_CPU), min_size=1, max_size=2, unique=True)),
        "world_sizes": draw(st.sampled_from([[1, 2], [2], [1], [2, 1]])),
    }
    text = st.text(st.characters(exclude_characters="\x00"))  # NUL: refused (no command line carries it)
    for key, values in (("steps", st.integers(1, 2)), ("warmup_steps", st.integers(1, 2)), ("description", text)):
        if draw(st.booleans()):
            study[key] = draw(values)
    jobs, _ = expand(check_config(study))
    if len(jobs) > MAX_JOBS:  # keep each example to a few jobs: drop strategies until it fits
        study["strategies"] = study["strategies"][:1]
        study["models"] = dict(list(study["models"].items())[:1])
    return study


def _check_outputs(root: Path, study: dict) -> None:
    """Tables, every plot (no "could not draw") and a report that lists every job and drop."""
    jobs, dropped = expand(check_config(study))
    layout = StudyLayout(study["study"], root / "results")
    runs = read_table(layout.table("runs"))
    assert len(runs) == len(jobs) and set(runs["status"]) == {"ok"}, runs[["id", "status", "error"]]
    assert len(read_table(layout.table("dropped"))) == len(dropped)
    scaling = read_table(layout.table("scaling"))
    assert len(scaling) == len({(j.model, j.strategy, j.world_size) for j in jobs})
    for plot in layout.plots():
        assert plot.stat().st_size > 1000, plot
        if plot.suffix == ".svg":
            assert "could not draw" not in plot.read_text()
    html = layout.report.read_text()
    assert f"from {len(jobs)} records" in html
    assert f"({len(jobs)} ok, 0 failed, 0 infeasible; {len(dropped)} combinations dropped" in html


def _run_study(study: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="gen-study-") as tmp:
        root = Path(tmp)
        (root / "study.yaml").write_text(yaml.safe_dump(study, allow_unicode=True))
        cmd = [
            str(SNAKEMAKE),
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            tmp,
            "--configfile",
            str(root / "study.yaml"),
            "--profile",
            str(ROOT / "profiles/ci"),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if not expand(check_config(study))[0]:  # every combination dropped: refused up front
            proc = subprocess.run([*cmd, "-n"], capture_output=True, text=True, env=env)
            assert proc.returncode != 0 and "no job to run" in proc.stdout + proc.stderr
            return
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        _check_outputs(root, study)


@pytest.mark.slow
@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(studies())
@example(  # the user's report: one strategy at one world size, no single baseline, no description
    {"study": "simple", "models": {"m": TINY_MODELS["mlp"]}, "strategies": ["ddp"], "world_sizes": [2], "steps": 1}
)
def test_generated_study_ends_with_tables_plots_and_report(study):
    """Any valid study ends with tables, every plot and a report (max 4 generated, reproducible)."""
    _run_study(study)
