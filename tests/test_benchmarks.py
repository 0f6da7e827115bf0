"""The benchmark scripts run (a smoke run at toy size; their figures are not checked here)."""

import os
import subprocess
import sys

import pytest

from benchbench.config import ROOT


@pytest.mark.slow
def test_overhead_benchmark_runs_and_prints_its_ratio():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/overhead.py"), "--model", "tiny", "--rounds", "2", "--steps", "1",
         "--warmup", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ratio benchbench/bare" in proc.stdout and "target ratio <= 1.01" in proc.stdout
