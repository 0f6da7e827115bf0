"""The benchmark scripts run (a smoke run at toy size; their figures are not checked here)."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from benchbench.spec.config import ROOT


@pytest.mark.slow
def test_overhead_benchmark_runs_and_prints_its_ratio():
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/overhead.py"),
            "--model",
            "tiny",
            "--rounds",
            "2",
            "--steps",
            "1",
            "--warmup",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ratio benchbench/bare" in proc.stdout and "target ratio <= 1.01" in proc.stdout


def _run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_aggregate_records_benchmark_runs_and_prints_its_figures():
    proc = _run_script(str(ROOT / "benchmarks/aggregate_records.py"), "--records", "40", "--cli")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "aggregate 40 records:" in proc.stdout and "peak RSS" in proc.stdout
    assert "python -m benchbench aggregate (40 records)" in proc.stdout and "target <= 10 s" in proc.stdout


@pytest.mark.slow
def test_large_study_benchmark_times_expansion_dag_and_floor():
    proc = _run_script(str(ROOT / "benchmarks/large_study.py"), "--models", "2", "--repeats", "1", "--no-slurm-probe")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for figure in ("expansion:", "DAG (snakemake -n", "floor (snakemake -n", "benchbench's part"):
        assert figure in proc.stdout


@pytest.mark.slow
def test_study_overhead_benchmark_prints_overhead_and_targets():
    proc = _run_script(str(ROOT / "benchmarks/study_overhead.py"), "--runs", "1", "--workflow", "none", "--batch", "2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for figure in ("1-rank ", "2-rank ", "<= 2.5 s: ", "<= 4 s: ", "overhead per extra job ", "<= 0.5 s: "):
        assert figure in proc.stdout


def test_study_expansion_imports_no_torch_and_keeps_seq_len():
    """Expansion runs in every Snakemake start: it reads seq_len from the model config (only sequence
    architectures have one) instead of importing torch for benchbench.models.registry."""
    code = (
        "import sys; from benchbench.spec.config import load_config; from benchbench.study import expand; "
        "jobs, _ = expand(load_config('config/studies/ci.yaml')); "
        "print('torch' in sys.modules, sorted({(j.model, j.seq_len) for j in jobs}, key=str))"
    )
    proc = _run_script("-c", code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "False"
    assert "('gpt-tiny', 16)" in proc.stdout and "('mlp-tiny', None)" in proc.stdout
    from benchbench.models.registry import ARCHITECTURES

    assert {name: a.sequence for name, a in ARCHITECTURES.items()} == {
        name: "seq_len" in a.size_keys for name, a in ARCHITECTURES.items()
    }


def _fake_run(folder, steps: dict, batched: bool) -> None:
    """Records of a study run in ``folder``: job id -> (step time median, loss)."""
    for job_id, (step, loss) in steps.items():
        path = folder / f"results/s/raw/m/h/ddp/{job_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        env = {"batch": {"index": 0, "size": 4}} if batched else {}
        rec = {"job": {"id": job_id}, "status": "ok", "summary": {"step_time_median_s": step}, "loss": loss, "env": env}
        path.write_text(json.dumps(rec))


def test_agreement_table_holds_batched_against_unbatched(tmp_path, capsys):
    """The batched-vs-unbatched table: per configuration the mean of the repeats each way, their
    ratio and the unbatched repeat spread; identical losses and batched records counted."""
    spec = importlib.util.spec_from_file_location("study_overhead", ROOT / "benchmarks/study_overhead.py")
    study_overhead = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study_overhead)

    _fake_run(tmp_path / "a", {"m__h__ddp__ws2__r0": (1.0, [1.0]), "m__h__ddp__ws2__r1": (1.2, [1.0])}, False)
    _fake_run(tmp_path / "b", {"m__h__ddp__ws2__r0": (1.3, [1.0]), "m__h__ddp__ws2__r1": (1.1, [0.9])}, True)
    study_overhead.print_agreement(tmp_path / "a", tmp_path / "b")
    out = capsys.readouterr().out
    assert re.search(r"m__h__ddp__ws2\s+1\.1000\s+1\.2000\s+1\.091\s+18\.2%", out), out
    assert "losses identical in 1 of 2 jobs; 2 of 2 batched-run records say batched" in out


def test_published_benchmark_prints_every_row_and_the_targets():
    """benchmarks/published.py predicts every published row (a row without a benchbench plan is
    printed as such, not dropped) and prints the summary the issue's targets use, without torch
    (the script asserts it last)."""
    from benchbench.spec.published import load_all

    proc = _run_script(str(ROOT / "benchmarks/published.py"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    for row in load_all():
        assert any(line.startswith(row.id + " ") for line in lines), row.id
    assert re.search(r"^zero-fig1-pos-g +ZeRO Figure 1 +no plan ", proc.stdout, re.M)
    assert re.search(r"^tt-70b-256gpu-2d +torchtitan Table 4 +no plan ", proc.stdout, re.M)
    assert re.search(r"^  ↳ tt-70b-256gpu-2d stand-in .* stand-in ", proc.stdout, re.M)
    assert re.search(r"^tt-8b-8gpu-fsdp +torchtitan Table 1 +approximate +5,762 ", proc.stdout, re.M)
    for figure in (
        "tokens/s/GPU, held-out rows with a benchbench plan (n = ",
        "memory, rows with a published figure",
        "runs predicted not to fit their hardware: ",
        "rows without a benchbench plan the rules accept: ",
    ):
        assert figure in proc.stdout


def test_fit_attainable_recovers_the_profile_fraction_and_reports_held_out_rows():
    """benchmarks/fit_attainable.py, fitting h100-sxm-96gb's gemm fraction on the row the profile
    names, finds the profile's value (0.455) and prints every other row as held-out."""
    proc = _run_script(
        str(ROOT / "benchmarks/fit_attainable.py"), "--hardware", "h100-sxm-96gb", "--rows", "tt-8b-8gpu-fsdp"
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "attainable.gemm fitted on tt-8b-8gpu-fsdp: 0.455 " in proc.stdout
    assert re.search(r"tt-8b-8gpu-fsdp +published +5,762 +predicted +5,76\d .* fitting", proc.stdout)
    assert re.search(r"tt-8b-128gpu-fsdp +published .* held-out", proc.stdout)
    assert "held-out (n = " in proc.stdout


def test_published_benchmark_refuses_to_pass_with_torch_imported():
    """The harness's no-torch assertion fires when torch is in the process (a mutant: torch imported first)."""
    code = (
        "import sys, runpy, torch; sys.argv = ['published.py']; "
        "runpy.run_path('benchmarks/published.py', run_name='__main__')"
    )
    proc = _run_script("-c", code)
    assert proc.returncode != 0
    assert "AssertionError: benchmarks/published.py imported torch" in proc.stderr
