"""The whole workflow: Snakemake with the CI profile runs the CI study end to end."""

import json
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchbench.costmodel.calibration import read_calibration
from benchbench.spec.config import ROOT, check_config
from benchbench.spec.paths import COSTMODEL_PLOTS, PLOTS
from benchbench.study import expand

pytestmark = pytest.mark.slow


def test_ci_study_end_to_end(tmp_path):
    snakemake = Path(sys.executable).with_name("snakemake")
    command = [
        str(snakemake),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(ROOT / "config/studies/ci.yaml"),
        "--profile",
        str(ROOT / "profiles/ci"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    study = tmp_path / "results" / "ci"
    runs = pd.read_csv(study / "tables" / "runs.csv")
    assert len(runs) == 10 and set(runs["status"]) == {"ok"}
    assert set(runs["correct"]) == {"match"}
    scaling = pd.read_csv(study / "tables" / "scaling.csv")
    assert set(scaling["strategy"]) == {"single", "dp-naive", "ddp"}
    assert (scaling["efficiency"] > 0).all()
    dropped = pd.read_csv(study / "tables" / "dropped.csv")
    assert len(dropped) == 2
    for name in PLOTS:
        assert (study / "plots" / f"{name}.svg").stat().st_size > 1000
        assert (study / "plots" / f"{name}.png").stat().st_size > 1000
    figures = {f["name"]: f["has_data"] for f in json.loads((study / "plots" / "figures.json").read_text())}
    assert figures == {**dict.fromkeys(PLOTS, True), "bubble": False, "compression": False}  # no pp, no compression
    html = (study / "report" / "index.html").read_text()
    assert 'id="scaling-table"' in html and "<table" in html.split('id="scaling-table"')[1][:200]
    assert "gpt-tiny" in html and "efficiency" in html and "<svg" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # self-contained: nothing fetched
    assert "<link" not in html and html.count("<script") == 1  # the report's own inline script only
    assert '<h3 id="study-file">' in html and "gpt-tiny" in html.split('id="provenance"')[1]
    assert "single-process plan needs world_size 1" in html  # dropped combinations are listed
    assert re.search(r'id="throughput">Timed steps are\s+\d+\.\d %', html)  # the study's timed share
    rec = json.loads((study / "raw/gpt-tiny/cpu-local/ddp/ws2-r0.json").read_text())
    assert rec["env"]["timed_alone"] is True  # profiles/default: bench_slots=1
    _check_prediction(study, html)
    # Snakemake's own report: every figure and table with its caption (about 5 s on top of the run)
    report = subprocess.run([*command, "--report", str(tmp_path / "report.zip")], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr[-3000:]
    with zipfile.ZipFile(tmp_path / "report.zip") as z:
        html = z.read("report/report.html").decode()
    assert "the black line is the Pareto front of the correct ones" in html  # a caption (workflow/report/)
    assert "pareto.svg" in html and "scaling.csv" in html
    # the calibration is cached: it reruns when its spec changes (a param), and no bench job with it
    changed = [*command, "-n", "--config", "calibration_max_bytes=1048576"]
    again = subprocess.run(changed, capture_output=True, text=True)
    assert "rule calibrate:" in again.stdout and "Params have changed" in again.stdout, again.stdout[-3000:]
    assert "rule bench:" not in again.stdout


def _check_prediction(study: Path, html: str) -> None:
    """calibrate -> predict ran: the calibration, the prediction tables (errors from the records)
    and the report's Prediction section with them."""
    cal = read_calibration(study / "calibration" / "cpu-local.json")
    assert cal.source == "measured" and {p.kind for p in cal.points} >= {"all_reduce", "all_gather"}
    table = pd.read_csv(study / "tables" / "prediction.csv")
    assert len(table) == 10 and table["step_time_err"].notna().all()
    for row in table.to_dict("records"):  # each error from its record: (pred - meas) / meas, meas the record's
        ws, name = row["world_size"], f"{row['model']}/cpu-local/{row['strategy']}"
        summary = json.loads((study / "raw" / name / f"ws{ws}-r0.json").read_text())["summary"]
        assert row["step_time_meas_s"] == pytest.approx(summary["step_time_median_s"])
        expected = (row["step_time_pred_s"] - summary["step_time_median_s"]) / summary["step_time_median_s"]
        assert row["step_time_err"] == pytest.approx(expected)
    summary = pd.read_csv(study / "tables" / "prediction_summary.csv").set_index("strategy")
    assert summary.loc["all", "configurations"] == 10
    grid = pd.read_csv(study / "tables" / "predictions.csv")
    assert grid["world_size"].max() == 4096 and "cpu-local" in set(grid["hardware"])
    for name in COSTMODEL_PLOTS:
        assert (study / "plots" / f"{name}.svg").stat().st_size > 1000
    section = html.split('id="prediction"')[1].split('id="correctness"')[0]
    assert "Predicted step time within" in section and 'id="t-prediction"' in section
    assert 'id="t-calibration-fits"' in section and 'id="fig-busbw"' in section and 'id="t-recommend"' in section
    worst = summary.loc["all", "step_time_err_worst"]
    assert f"worst {abs(worst) * 100:.0f} %" in section  # the page shows the table's error


def test_concurrent_timing_is_opt_in_and_recorded(tmp_path):
    snakemake = Path(sys.executable).with_name("snakemake")
    base = [
        str(snakemake),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "-n",
        "-p",
        "--configfile",
        str(ROOT / "config/studies/ci.yaml"),
    ]
    default = subprocess.run(base, capture_output=True, text=True, check=True).stdout
    shared = subprocess.run([*base, "--resources", "bench_slots=2"], capture_output=True, text=True, check=True).stdout
    assert "benchbench run" in default and "--timed-shared" not in default
    assert shared.count("--timed-shared") == 10  # every bench job of the ci study
    # a failed calibration writes its failure's record (exit 0), so predict and the report still run
    calibrate = default.split("-m benchbench calibrate ")[1].split("\n")[0]
    assert "--allow-failed" in calibrate and "--retry-of=" in calibrate


def test_repeats_are_interleaved_across_configurations(tmp_path):
    """Every configuration's repeat k runs before any repeat k+1 (bench's priority). `--touch`
    goes through Snakemake's scheduler, one bench job at a time under bench_slots=1, without
    running any job (a dry run skips the scheduler)."""
    study = yaml.safe_load((ROOT / "config/studies/ci.yaml").read_text()) | {"repeats": 3}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    snakemake = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run(
        [
            str(snakemake),
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--touch",
            "--until",
            "bench",
            "--configfile",
            str(tmp_path / "study.yaml"),
            "--cores",
            "2",
            "--resources",
            "bench_slots=1",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    started = re.findall(r"output: \S*/raw/(\S*)-r(\d+)\.json", proc.stdout + proc.stderr)
    assert len(started) == 30  # 10 configurations x 3 repeats, in the order they were started
    order = [int(r) for _, r in started]
    assert order == sorted(order)
    # within a round the configurations start in the order of a permutation seeded by (seed, round)
    jobs, _ = expand(check_config(study))
    configs = sorted({(j.model, j.hardware, j.strategy, j.world_size) for j in jobs})
    for k in range(3):
        shuffled = random.Random(f"{study.get('seed', 0)}-{k}").sample(configs, len(configs))
        assert [c for c, r in started if int(r) == k] == [f"{m}/{h}/{s}/ws{n}" for m, h, s, n in shuffled]


def test_batched_launches_keep_the_record_set_and_rerun_only_a_changed_batch(tmp_path):
    """jobs_per_launch: 3 runs the CI study's bench jobs in batches (one rule each, its records
    its outputs): every job's record, at its usual path, says which batch slot it ran in; a
    changed model reruns the batches holding one of its jobs, and no other."""
    study = yaml.safe_load((ROOT / "config/studies/ci.yaml").read_text()) | {"jobs_per_launch": 3}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    snakemake = Path(sys.executable).with_name("snakemake")
    base = [
        str(snakemake),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--until",
        "aggregate",
        "--configfile",
        str(tmp_path / "study.yaml"),
        "--profile",
        str(ROOT / "profiles/ci"),
    ]
    proc = subprocess.run(base, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    raw = tmp_path / "results" / "ci" / "raw"
    jobs, _ = expand(check_config(study))
    expected = {f"{j.model}/{j.hardware}/{j.strategy}/ws{j.world_size}-r{j.repeat}.json" for j in jobs}
    records = {str(p.relative_to(raw)): json.loads(p.read_text()) for p in raw.glob("**/*.json")}
    assert set(records) == expected  # the record set of the unbatched workflow (bench's outputs)
    assert {r["status"] for r in records.values()} == {"ok"}
    assert all(r["env"]["batch"]["size"] >= 1 for r in records.values())  # every job ran batched
    assert all(r["env"]["batch"]["size"] > 1 for r in records.values() if r["job"]["model"] == "gpt-tiny")
    # gpt-tiny changed: the three batches with a gpt-tiny job rerun, the two of mlp-tiny/ddp alone do not
    study["models"]["gpt-tiny"]["batch_size"] = 16
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    dry = subprocess.run([*base, "-n"], capture_output=True, text=True).stdout
    rerun = re.findall(r"rule (bench_batch_\d+):\n\s+output: ([^\n]*)", dry)
    assert len(rerun) == 3 and all("gpt-tiny" in outputs for _, outputs in rerun), dry[-3000:]
    assert "mlp-tiny/cpu-local/ddp" not in " ".join(o for _, o in rerun)
