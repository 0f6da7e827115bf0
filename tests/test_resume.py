"""Long studies: interrupted, resumed, retried. A finished job is never redone; a failed record is
kept until asked for again; a job whose study settings changed reruns; SIGTERM to the whole study
leaves no partial record and no process, and the same command then finishes the rest."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchbench.spec.config import ROOT

pytestmark = pytest.mark.slow

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# the mutants' sitecustomize first, the package (as the tests import it) after
MUTANTS = os.pathsep.join([str(ROOT / "tests" / "mutants"), str(ROOT)])
STUDY = {
    "study": "resume",
    "models": {"mlp-tiny": {"arch": "mlp", "width": 32, "depth": 2, "out_dim": 4, "batch_size": 16}},
    "hardware": ["cpu-local"],
    "strategies": ["single", "ddp"],
    "world_sizes": [1, 2],
    "steps": 3,
    "warmup_steps": 1,
    "repeats": 1,
    "timeout_s": 60,
}


def _write_study(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY | changes))
    return path


def _snakemake(tmp_path: Path, *args: str) -> list[str]:
    return [
        SNAKEMAKE,
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--profile",
        str(ROOT / "profiles/ci"),
        "--configfile",
        str(tmp_path / "study.yaml"),
        *args,
    ]


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        _snakemake(tmp_path, *args), capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _planned_bench_jobs(tmp_path: Path, *args: str) -> list[str]:
    """The records a dry run would (re)make."""
    out = _run(tmp_path, "-n", *args)
    return sorted(set(re.findall(r"output: \S*/raw/(\S+\.json)", out.stdout + out.stderr)))


def _records(tmp_path: Path) -> dict[str, dict]:
    raw = tmp_path / "results" / "resume" / "raw"
    paths = [p for p in sorted(raw.rglob("*.json")) if not any(q.startswith(".") for q in p.relative_to(raw).parts)]
    return {str(p.relative_to(raw)): json.loads(p.read_text()) for p in paths}


def _leftover_processes(marker: str) -> list[str]:
    """Processes whose command line mentions ``marker`` (this test's folder)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd:
                out.append(f"{proc.name}: {cmd}")
    return out


def test_failed_job_is_kept_until_retry_failed_and_changed_config_reruns(tmp_path):
    _write_study(tmp_path)
    fault = {"PYTHONPATH": MUTANTS, "BENCHBENCH_MUTANT": "fault", "BENCHBENCH_FAULT": "raise:1:0"}
    _run(tmp_path, env=fault)  # rank 1 raises: ddp at 2 ranks fails, single (rank 0 only) is fine
    first = _records(tmp_path)
    assert {k: r["status"] for k, r in first.items()} == {
        "mlp-tiny/cpu-local/single/ws1-r0.json": "ok",
        "mlp-tiny/cpu-local/ddp/ws1-r0.json": "ok",
        "mlp-tiny/cpu-local/ddp/ws2-r0.json": "failed",
    }
    assert (tmp_path / "results/resume/report/index.html").exists()  # a failed job still ends in a report
    assert _planned_bench_jobs(tmp_path) == []  # a failed record is a result: kept
    assert _planned_bench_jobs(tmp_path, "--config", "retry_failed=True") == ["mlp-tiny/cpu-local/ddp/ws2-r0.json"]
    _run(tmp_path, "--config", "retry_failed=True")
    second = _records(tmp_path)
    assert second["mlp-tiny/cpu-local/ddp/ws2-r0.json"]["status"] == "ok"
    assert (
        second["mlp-tiny/cpu-local/ddp/ws2-r0.json"]["env"]["retry_of"]
        == first["mlp-tiny/cpu-local/ddp/ws2-r0.json"]["created_at"]
    )
    assert second["mlp-tiny/cpu-local/single/ws1-r0.json"] == first["mlp-tiny/cpu-local/single/ws1-r0.json"]
    # the retried job is settled: neither a plain run nor another retry run redoes it
    assert _planned_bench_jobs(tmp_path) == []
    assert _planned_bench_jobs(tmp_path, "--config", "retry_failed=True") == []
    # a record cut short (a disk filled up, a copy interrupted) is retried like a failed one
    single = tmp_path / "results/resume/raw/mlp-tiny/cpu-local/single/ws1-r0.json"
    single.write_text(single.read_text()[:100])
    assert _planned_bench_jobs(tmp_path) == []
    assert _planned_bench_jobs(tmp_path, "--config", "retry_failed=True") == ["mlp-tiny/cpu-local/single/ws1-r0.json"]
    # a changed study setting reruns the jobs it changes, and only those
    _write_study(tmp_path, strategies=["single", "ddp"], loss_tolerance=1e-4)
    assert len(_planned_bench_jobs(tmp_path)) == 3
    _write_study(tmp_path, models=STUDY["models"] | {"mlp-wide": {**STUDY["models"]["mlp-tiny"], "width": 48}})
    assert _planned_bench_jobs(tmp_path) == [
        "mlp-wide/cpu-local/ddp/ws1-r0.json",
        "mlp-wide/cpu-local/ddp/ws2-r0.json",
        "mlp-wide/cpu-local/single/ws1-r0.json",
    ]


def test_sigterm_to_the_study_stops_cleanly_and_the_same_command_resumes(tmp_path):
    _write_study(tmp_path)  # 3 bench jobs of a few seconds each, one at a time
    env = {**os.environ, "PYTHONPATH": MUTANTS, "BENCHBENCH_MUTANT": "slow-step", "BENCHBENCH_DELAY_S": "0.5"}
    proc = subprocess.Popen(
        _snakemake(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    raw = tmp_path / "results" / "resume" / "raw"
    deadline = time.monotonic() + 120
    # wait until one record is written and the next job's ranks are running (its temp folder exists)
    while time.monotonic() < deadline and not (_records(tmp_path) and list(raw.rglob(".ws*"))):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    assert _records(tmp_path), "no job finished in time"
    before = {k: r["created_at"] for k, r in _records(tmp_path).items()}
    stopped = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)  # what Slurm pre-emption does to the whole job
    proc.communicate(timeout=60)
    took = time.monotonic() - stopped
    assert took < 20, f"study took {took:.1f} s to stop"
    time.sleep(1)
    assert _leftover_processes(str(tmp_path)) == []
    after = _records(tmp_path)  # every record there parses and is a finished one (the running job
    # may have finished just before the signal); none written before it changed
    assert {k: after[k]["created_at"] for k in before} == before
    assert all(r["status"] == "ok" for r in after.values())
    _run(tmp_path)  # the same command: finishes the rest, redoes nothing
    assert not list(raw.rglob(".ws*"))  # no temporary folder is left (one a kill left is removed on the rerun)
    final = _records(tmp_path)
    assert len(final) == 3 and all(r["status"] == "ok" for r in final.values())
    assert {k: final[k]["created_at"] for k in after} == {k: r["created_at"] for k, r in after.items()}
    assert (tmp_path / "results/resume/report/index.html").exists()
