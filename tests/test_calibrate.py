"""``benchbench calibrate``: the spec a study asks for, the nccl-tests columns and α-β fits of a real
2-rank sweep (tiny models, 1-64 KiB), and a calibration that fails leaving no file."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import pytest

from benchbench.costmodel.calibrate import (
    LATENCY_BOUND_FACTOR,
    CalibrationSpec,
    fit_collective,
    make_point,
    sweep_sizes,
)
from benchbench.costmodel.calibration import CollectivePoint, read_calibration
from benchbench.costmodel.collectives import COLLECTIVES, LATENCY_STEPS
from benchbench.spec.config import DEFAULT_CONFIG, ROOT, check_config, load_config
from benchbench.spec.paths import StudyLayout
from benchbench.study import calibration_spec
from tests.helpers.jobs import TINY_GPT, TINY_MLP
from tests.helpers.processes import orphans

#: nccl-tests PERFORMANCE.md bus factors, written out here independently of collectives.BUS_FACTOR
#: (so a wrong factor there fails test_points_have_nccl_tests_columns).
NCCL_TESTS_FACTOR = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "send": lambda n: 1.0,
}
MAX_BYTES = 64 * 1024


def nccl_columns_ok(p: CollectivePoint) -> bool:
    """algbw = size / time and busbw = algbw x the nccl-tests factor, to float rounding."""
    alg = p.payload_bytes / p.time_s
    bus = alg * NCCL_TESTS_FACTOR[p.kind](p.group_size)
    return math.isclose(p.algbw, alg, rel_tol=1e-12) and math.isclose(p.busbw, bus, rel_tol=1e-12)


def tiny_spec(**changes) -> dict:
    """The ci study's calibration spec as JSON (what --spec reads), with tiny models and a short sweep."""
    spec = calibration_spec(load_config(ROOT / "config" / "studies" / "ci.yaml"), "cpu-local").to_dict()
    spec.update(
        models={
            "gpt-tiny": {"model_cfg": dict(TINY_GPT), "batches": [4, 8]},
            "mlp-tiny": {"model_cfg": dict(TINY_MLP), "batches": [16]},
        },
        world_size=2,
        group_sizes=[2],
        max_bytes=MAX_BYTES,
        timeout_s=120.0,
    )
    spec.update(changes)
    return spec


def calibrate(spec: dict, out: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "benchbench", "calibrate", "--spec", f"@{spec_file}", "--out", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One real calibration: 2 ranks on gloo, 1-64 KiB, the tiny models."""
    tmp = tmp_path_factory.mktemp("cal")
    out = tmp / "calibration" / "cpu-local.json"
    proc = calibrate(tiny_spec(), out, tmp)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return read_calibration(out), proc.stdout, out


# ------------------------------------------------------------------------------------ spec


def test_spec_of_the_default_study():
    spec = calibration_spec(load_config(DEFAULT_CONFIG), "cpu-local").to_dict()
    assert (spec["world_size"], spec["group_sizes"], spec["max_bytes"]) == (2, [2], 256 * 1024**2)
    # global batch 1024 (single) and 1024 / dp 2 (dp-naive, ddp); gpt-small 8 and 4
    assert {k: m["batches"] for k, m in spec["models"].items()} == {"mlp-8m": [512, 1024], "gpt-small": [4, 8]}
    assert "batch_size" not in spec["models"]["mlp-8m"]["model_cfg"]
    assert spec["hardware_cfg"]["backend"] == "gloo"


def test_spec_group_sizes_and_micro_batches():
    """dp, tp, pp and world sizes > 1 are group sizes; per-rank batches split by dp and by
    accumulation steps or pipeline micro-batches."""
    cfg = check_config(
        {
            "study": "s",
            "models": {"g": dict(TINY_GPT, layers=4, batch_size=16)},
            "world_sizes": [1, 2, 4],
            "strategies": ["single", "ddp", "ddp-accum", "pp-1f1b", "fsdp-tp"],
        }
    )
    spec = calibration_spec(cfg, "cpu-local").to_dict()
    # single 16; ddp 16/2, 16/4; ddp-accum (2 steps) 16/2/2, 16/4/2; pp-1f1b (4 micro-batches)
    # 16/4 at pp 2 and 4; fsdp-tp (tp 2) at 4 ranks: dp 2 -> 16/2
    assert spec["models"]["g"]["batches"] == [2, 4, 8, 16]
    assert (spec["world_size"], spec["group_sizes"]) == (4, [2, 4])


def test_spec_of_a_predicted_top_k_study_needs_no_calibration(tmp_path, monkeypatch):
    """predicted-top-K needs a calibration to expand, so the calibration's spec must not: it
    covers the study's other strategies (ddp when none) and every group size a plan at its world
    sizes may use (the divisors > 1), whether or not a calibration exists (so calibrating does
    not change the spec it was made from)."""
    monkeypatch.chdir(tmp_path)  # no results/s/calibration here
    cfg = check_config(
        {
            "study": "s",
            "models": {"g": dict(TINY_GPT, layers=4, batch_size=16)},
            "world_sizes": [1, 2, 4],
            "strategies": ["single", "predicted-top-2"],
        }
    )
    spec = calibration_spec(cfg, "cpu-local").to_dict()
    assert (spec["world_size"], spec["group_sizes"]) == (4, [2, 4])
    assert spec["models"]["g"]["batches"] == [4, 8, 16]  # single 16; ddp 16/2, 16/4


def test_spec_max_bytes_from_the_study_and_ci():
    assert calibration_spec(load_config(ROOT / "config" / "studies" / "ci.yaml"), "cpu-local").max_bytes == 4194304
    with pytest.raises(ValueError, match="no job on hardware"):
        calibration_spec(load_config(DEFAULT_CONFIG), "h100-sxm")
    assert StudyLayout("default").calibration("cpu-local") == Path("results/default/calibration/cpu-local.json")


def test_spec_json_keeps_its_keys_and_round_trips():
    """The typed spec writes the JSON the workflow's calibrate param and the ranks' job file have
    always held (same keys, same order), and reads it back unchanged."""
    spec = calibration_spec(load_config(ROOT / "config" / "studies" / "ci.yaml"), "cpu-local")
    doc = spec.to_dict()
    keys = ["study", "hardware", "hardware_cfg", "world_size", "group_sizes", "models"]
    keys += ["threads_per_rank", "dtype", "seed", "optimizer", "max_bytes", "timeout_s"]
    assert list(doc) == keys
    assert all(list(m) == ["model_cfg", "batches"] for m in doc["models"].values())
    back = CalibrationSpec.from_dict(json.loads(json.dumps(doc)))
    assert back == spec and back.to_dict() == doc
    bare = {k: v for k, v in doc.items() if k not in ("study", "optimizer")}
    assert CalibrationSpec.from_dict(bare).to_dict() == bare
    with pytest.raises(ValueError, match=r"missing keys \['world_size'\]"):
        CalibrationSpec.from_dict({k: v for k, v in doc.items() if k != "world_size"})


# ------------------------------------------------------------------------------------- fit


def test_fit_recovers_alpha_and_bandwidth():
    alpha, bw, n = 40e-6, 2.5e9, 4
    for kind in COLLECTIVES:
        pts = [
            make_point(kind, n, s, alpha * LATENCY_STEPS[kind](n) + s * NCCL_TESTS_FACTOR[kind](n) / bw)
            for s in sweep_sizes(256 * 1024**2)
        ]
        fit = fit_collective(pts)
        assert fit.alpha_s == pytest.approx(alpha, rel=1e-6) and fit.bus_bandwidth == pytest.approx(bw, rel=1e-6)


def test_fit_of_a_latency_bound_sweep_keeps_a_finite_bandwidth():
    pts = [make_point("all_reduce", 2, s, 300e-6) for s in sweep_sizes(16 * 1024)]
    fit = fit_collective(pts)
    assert fit.bus_bandwidth == pytest.approx(LATENCY_BOUND_FACTOR * max(p.busbw for p in pts))
    assert all(fit.time(2, p.payload_bytes) == pytest.approx(p.time_s, rel=0.02) for p in pts)


def test_the_columns_check_catches_a_wrong_bus_factor():
    good = make_point("all_gather", 4, 4096, 1e-4)
    wrong = CollectivePoint("all_gather", 4, 4096, 1e-4, good.algbw, good.algbw * 2 * 3 / 4)  # all-reduce's factor
    assert nccl_columns_ok(good) and not nccl_columns_ok(wrong)


# ---------------------------------------------------------------------------- measured run


@pytest.mark.slow
def test_calibration_file_reads_back(measured):
    cal, stdout, out = measured
    assert (cal.hardware, cal.source, cal.device, cal.threads_per_rank) == ("cpu-local", "measured", "cpu", 1)
    assert cal.cpu_count and cal.created_at and cal.env["torch"] and cal.env["wall_time_s"] > 0
    sizes = sweep_sizes(MAX_BYTES)
    assert sorted((p.kind, p.group_size) for p in cal.points) == sorted((k, 2) for k in COLLECTIVES for _ in sizes)
    assert sorted(f.kind for f in cal.collectives) == sorted(COLLECTIVES)
    assert list(out.parent.iterdir()) == [out]  # no temporary file or folder left beside it
    assert "busbw (GB/s)" in stdout and "# fit: alpha" in stdout


@pytest.mark.slow
def test_points_have_nccl_tests_columns(measured):
    cal = measured[0]
    for p in cal.points:
        assert nccl_columns_ok(p), p
        # nccl-tests size: a multiple of 4 x n bytes where the tensor is split over the ranks
        split = p.kind in ("all_gather", "reduce_scatter")
        assert p.payload_bytes % (4 * p.group_size if split else 4) == 0 and p.payload_bytes <= MAX_BYTES


@pytest.mark.slow
def test_fits_are_positive_and_reproduce_their_points(measured):
    cal = measured[0]
    for fit in cal.collectives:
        assert fit.alpha_s > 0 and math.isfinite(fit.bus_bandwidth) and fit.bus_bandwidth > 0, fit
        assert (fit.level, fit.source, fit.group_size) == ("intra", "measured", 2)
        ratios = [fit.time(2, p.payload_bytes) / p.time_s for p in cal.points if p.kind == fit.kind]
        # timings on 2 shared cores scatter (docs/METRICS.md): the fit follows the typical point,
        # and no point is an order of magnitude off
        assert 0.5 < median(ratios) < 2 and all(0.1 < r < 10 for r in ratios), (fit, ratios)


@pytest.mark.slow
def test_compute_matmul_and_overlap(measured):
    cal = measured[0]
    assert {k: [p.batch for p in v] for k, v in cal.compute.items()} == {"gpt-tiny": [4, 8], "mlp-tiny": [16]}
    assert all(p.forward_s > 0 and p.backward_s > 0 and p.optimizer_s > 0 for v in cal.compute.values() for p in v)
    assert cal.model_cfgs["gpt-tiny"] == TINY_GPT
    shapes = {(r["m"], r["n"], r["k"]) for r in cal.matmul}
    assert shapes == {(64, 128, 32), (128, 128, 32), (16, 32, 32)}  # tokens x 4h x h; batch x width x width
    assert all(r["flops_per_s"] > 0 and r["dtype"] == "fp32" for r in cal.matmul)
    assert 0.0 <= cal.overlap <= 1.0 and cal.env["overlap_s"]["both"] > 0


# ------------------------------------------------------------------------------- failures


@pytest.mark.slow
def test_a_failing_rank_exits_non_zero_and_leaves_no_file(tmp_path):
    bad = {"bad": {"model_cfg": dict(TINY_GPT, hidden=30, heads=4), "batches": [2]}}  # 30 % 4: the rank raises
    out = tmp_path / "cal" / "x.json"
    proc = calibrate(tiny_spec(models=bad, max_bytes=1024), out, tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "calibration of cpu-local failed" in proc.stderr and "divisible by heads" in proc.stderr
    assert not out.exists() and list(out.parent.iterdir()) == []


@pytest.mark.slow
def test_allow_failed_records_the_failure_so_the_workflow_goes_on_and_keeps_a_usable_calibration(tmp_path):
    """The workflow's calibrate (--allow-failed): a failure exits 0 with its record at --out, which
    every reader refuses with the reason (so predict and the report run and say why); a usable
    calibration already there is not overwritten by a failed run."""
    from benchbench.costmodel.calibration import from_spec, write_calibration
    from benchbench.costmodel.validate import load_calibrations
    from benchbench.spec.hardware import load_hardware

    bad = {"bad": {"model_cfg": dict(TINY_GPT, hidden=30, heads=4), "batches": [2]}}
    spec = tiny_spec(models=bad, max_bytes=1024)
    out = tmp_path / "cal" / "cpu-local.json"
    proc = calibrate(spec, out, tmp_path, "--allow-failed", "--retry-of=tok")
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["status"] == "failed" and doc["retry_of"] == "tok" and "divisible by heads" in doc["reason"]
    with pytest.raises(ValueError, match="the calibration failed: calibration of cpu-local failed"):
        read_calibration(out)
    cals, notes = load_calibrations([out])
    assert cals == {} and "divisible by heads" in notes[0]
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left

    good = from_spec("h100-sxm", load_hardware("h100-sxm"))
    write_calibration(good, out)
    before = out.read_bytes()
    proc = calibrate(spec, out, tmp_path, "--allow-failed")
    assert proc.returncode == 1 and "kept the usable calibration" in proc.stderr, proc.stderr[-2000:]
    assert out.read_bytes() == before


@pytest.mark.slow
def test_a_calibration_past_its_timeout_is_killed_and_leaves_no_file(tmp_path):
    out = tmp_path / "cal" / "x.json"
    proc = calibrate(tiny_spec(timeout_s=1.0), out, tmp_path)
    assert proc.returncode == 1 and "failed (job_timeout)" in proc.stderr, proc.stderr[-2000:]
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_an_impossible_spec_is_refused_before_any_rank(tmp_path):
    out = tmp_path / "x.json"
    proc = calibrate(tiny_spec(group_sizes=[2, 3]), out, tmp_path)
    assert proc.returncode == 2 and "group sizes [3] outside 2..world_size (2)" in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_sigterm_kills_the_ranks_and_leaves_no_file(tmp_path):
    out = tmp_path / "cal" / "x.json"
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(tiny_spec(max_bytes=256 * 1024**2)))  # a sweep long enough to be caught in
    cmd = [sys.executable, "-m", "benchbench", "calibrate", "--spec", f"@{spec_file}", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not any(p.read_text().split()[1:2] == ["collectives"] for p in out.parent.glob(".x.*/hb/rank*")):
        assert time.monotonic() < deadline and proc.poll() is None, "the sweep never started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 128 + signal.SIGTERM and "no calibration written" in err
    assert not out.exists() and list(out.parent.iterdir()) == []
    assert orphans(tmp_path) == []


def test_cli_refuses_a_hardware_the_study_does_not_run_on(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "benchbench",
        "calibrate",
        "--configfile",
        "config/studies/ci.yaml",
        "--hardware",
        "h100-sxm",
        "--out",
        str(tmp_path / "x.json"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "runs no job on hardware 'h100-sxm'" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_calibration_ranks_start_like_a_jobs_ranks_under_srun():
    from benchbench.costmodel.calibrate import job_for
    from benchbench.costmodel.run_calibration import RANK_MODULE
    from benchbench.launch.command import rank_command

    job = job_for(CalibrationSpec.from_dict(tiny_spec(world_size=4, group_sizes=[2, 4])), 4)
    srun = rank_command(job, Path("s"), Path("o"), Path("e"), "srun", module=RANK_MODULE)
    assert srun[:3] == ["srun", "--ntasks=4", "--nodes=1"] and "--kill-on-bad-exit=1" in srun
    assert srun[srun.index("-m") + 1] == "benchbench.rank.calibrate"
    torchrun = rank_command(job, Path("s"), Path("o"), Path("e"), "torchrun", module=RANK_MODULE)
    assert "--nproc-per-node=4" in torchrun and torchrun[-7:-6] == ["benchbench.rank.calibrate"]
