"""Real multi-process runs (torchrun + gloo): parallel strategies match the single process, and
failing jobs leave records saying why."""

import json
import re
import subprocess
import sys

import pytest

from benchbench.spec.config import ROOT
from benchbench.spec.hardware import load_hardware
from tests.helpers.jobs import TINY_GPT, run

CPU_LOCAL = load_hardware("cpu-local")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def single_gpt(tmp_path_factory, request):
    from benchbench.spec.config import check_config

    cfg = check_config(
        {
            "study": "t",
            "models": {"gpt-tiny": dict(TINY_GPT, batch_size=8)},
            "strategies": ["single"],
            "world_sizes": [1],
            "steps": 5,
            "warmup_steps": 1,
            "timeout_s": 120,
        }
    )
    return cfg, run(cfg, tmp_path_factory.mktemp("single"), "gpt-tiny", "single", 1)


@pytest.mark.parametrize("strategy", ["ddp", "dp-naive"])
def test_two_rank_data_parallel_matches_single(single_gpt, tmp_path, strategy):
    cfg, single = single_gpt
    assert single["status"] == "ok", single["error"]
    rec = run(cfg, tmp_path, "gpt-tiny", strategy, 2)
    assert rec["status"] == "ok", rec["error"]
    assert len(rec["loss"]) == len(single["loss"]) == 6  # 1 warm-up + 5 timed
    assert len(rec["step_time_s"]) == 5
    dev = max(abs(a - b) for a, b in zip(rec["loss"], single["loss"], strict=True))
    assert dev <= 1e-5
    assert rec["loss"][-1] < rec["loss"][0]  # the synthetic task is learnable
    assert rec["env"]["ranks"] == 2 and rec["env"]["launcher"] == "torchrun" and rec["env"]["backend"] == "gloo"
    s = rec["summary"]
    assert s["tokens_per_s"] == pytest.approx(s["samples_per_s"] * 16)
    assert s["comm_bytes_per_step"] == 4 * s["params"]  # fp32 gradients, all of them
    assert s["comm_bytes_source"] == "measured"  # counted at the dispatcher, DDP's C++ reducer included
    assert s["peak_mem_mb"] > 0 and s["model_tflops_per_rank"] > 0


def test_rank_failure_leaves_failed_record(tmp_path, tiny_config):
    # A GPU profile's backend on a CPU-only machine: every rank raises in init_process_group.
    rec = run(tiny_config, tmp_path, "gpt-tiny", "ddp", 2, hardware_cfg=CPU_LOCAL.to_dict() | {"backend": "nccl"})
    assert rec["status"] == "failed"
    # both ranks raise; which one the record names first is a race (the launcher stops the other)
    assert re.search(r"rank ?[01]\b", rec["error"]) and "nccl" in rec["error"].lower(), rec["error"]
    assert rec["failure"]["kind"] == "rank_exception" and rec["failure"]["rank"] in (0, 1)  # both raise
    assert rec["step_time_s"] == [] and rec["summary"]["samples_per_s"] is None


def test_timeout_leaves_failed_record(tmp_path, tiny_config):
    rec = run(tiny_config, tmp_path, "mlp-tiny", "ddp", 2, timeout_s=0.5)
    assert rec["status"] == "failed"
    assert rec["error"].startswith("job_timeout after 0.5 s: ")
    assert rec["failure"]["kind"] == "job_timeout" and rec["env"]["wall_time_s"] < 5


def test_cli_run_infeasible_writes_record(tmp_path):
    out = tmp_path / "x.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchbench",
            "run",
            "--model",
            "gpt-small",
            "--strategy",
            "single",
            "--world-size",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    rec = json.loads(out.read_text())
    assert rec["status"] == "infeasible"
    assert "needs world_size 1" in rec["error"]


def test_cli_unknown_model_names_allowed(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchbench",
            "run",
            "--model",
            "nope",
            "--strategy",
            "ddp",
            "--world-size",
            "2",
            "--out",
            str(tmp_path / "x.json"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "--model: 'nope' is not in the study's models; allowed: ['gpt-small', 'mlp-8m']" in proc.stderr
    assert not (tmp_path / "x.json").exists()
