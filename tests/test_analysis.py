"""Speedup / efficiency arithmetic and loss deviation, on hand-made records."""

import math

import numpy as np
import pandas as pd
import pytest

from benchbench.protocol.record import make_record
from benchbench.results.tables import loss_deviation, runs_table, scaling_table
from tests.helpers.jobs import make_test_job
from tests.helpers.records import rec


def test_strong_scaling_speedup_and_efficiency():
    t = scaling_table([rec("single", 1, 1.0), rec("ddp", 1, 1.1), rec("ddp", 2, 0.625), rec("ddp", 4, 0.5)])
    row = t.set_index(["strategy", "world_size"])
    assert row.loc[("ddp", 2), "speedup"] == pytest.approx(1.6)  # T(1)/T(2) = 1.0/0.625
    assert row.loc[("ddp", 2), "efficiency"] == pytest.approx(0.8)
    assert row.loc[("ddp", 4), "efficiency"] == pytest.approx(0.5)
    assert row.loc[("ddp", 1), "speedup"] == pytest.approx(1 / 1.1)
    assert set(t["baseline"]) == {"single ws1"}


def test_weak_scaling_efficiency():
    # per-rank batch 64: ws2 processes 128 samples in 1.25 s -> 102.4/s vs 64/s at ws1
    t = scaling_table([rec("single", 1, 1.0, batch=64), rec("ddp", 2, 1.25, batch=128)], scaling="weak")
    row = t.set_index(["strategy", "world_size"]).loc[("ddp", 2)]
    assert row["efficiency"] == pytest.approx(102.4 / (2 * 64))


def test_baseline_falls_back_to_own_ws1():
    t = scaling_table([rec("ddp", 1, 2.0), rec("ddp", 2, 1.0)])
    row = t.set_index(["strategy", "world_size"]).loc[("ddp", 2)]
    assert row["speedup"] == pytest.approx(2.0)
    assert row["baseline"] == "ddp ws1"


def test_failed_records_are_excluded_from_scaling_but_listed_in_runs():
    records = [rec("single", 1, 1.0), rec("ddp", 2, 0.5, status="failed")]
    assert list(scaling_table(records)["strategy"]) == ["single"]
    runs = runs_table(records)
    assert list(runs["status"]) == ["ok", "failed"]
    assert runs.iloc[1]["error"] == "boom"


def test_loss_dev_against_single():
    records = [rec("single", 1, 1.0, loss=(2.0, 1.5, 1.0)), rec("ddp", 2, 0.5, loss=(2.0, 1.5, 1.00002))]
    runs = runs_table(records).set_index("strategy")
    assert runs.loc["ddp", "loss_dev"] == pytest.approx(2e-5)
    assert runs.loc["ddp", "correct"] == "MISMATCH"  # default tolerance 1e-5
    assert runs.loc["single", "correct"] == "match"
    assert loss_deviation([1.0, 2.0], [1.0]) == math.inf  # equal lengths required: no common-prefix match
    assert math.isnan(loss_deviation([], []))


def test_gate_mismatch_wins_and_truncated_runs_never_match():
    good = rec("ddp", 2, 0.5, loss=(2.0, 1.5, 1.0))
    bad_gate = rec("dp-naive", 2, 0.5, loss=(2.0, 1.5, 1.0))
    bad_gate["summary"]["verify_verdict"] = "MISMATCH"  # trajectory equal, one SGD step off: still a mismatch
    truncated = rec("zero1", 2, 0.5, loss=(2.0, 1.5, 1.0))
    truncated["loss"] = [2.0, 1.5]  # a foreign or damaged record: shorter than its job's steps
    runs = runs_table([rec("single", 1, 1.0, loss=(2.0, 1.5, 1.0)), good, bad_gate, truncated])
    verdicts = dict(zip(runs["strategy"], runs["correct"], strict=True))
    assert verdicts == {"single": "match", "ddp": "match", "dp-naive": "MISMATCH", "zero1": "MISMATCH"}


def test_ok_record_must_hold_every_step():
    job = make_test_job("ddp", 2, steps=3, warmup_steps=1)
    with pytest.raises(ValueError, match="needs 4 losses and 3 step times, got 3 and 3"):
        make_record(job=job, status="ok", step_time_s=[0.1] * 3, loss=[1.0] * 3)


def test_trajectory_tolerance_follows_the_precision():
    single = rec("single", 1, 1.0, loss=(4.0, 3.0, 2.0))
    bf16 = rec("ddp", 2, 0.5, loss=(4.0, 3.0, 2.0004))  # 4e-4 off: bf16 rounding, not a bug
    bf16["summary"]["verify_tolerance"] = 5e-2  # the gate's bf16 tolerance x 4.0 = 0.2
    fp32 = rec("fsdp", 2, 0.5, loss=(4.0, 3.0, 2.0004))
    fp32["summary"]["verify_tolerance"] = 1e-6  # x 4.0 = 4e-6 < 4e-4: the trajectory left single
    verdicts = dict(zip(*[runs_table([single, bf16, fp32])[c] for c in ("strategy", "correct")], strict=True))
    assert verdicts == {"single": "match", "ddp": "match", "fsdp": "MISMATCH"}


def test_drift_flags_a_trend_the_cv_would_call_small():
    from benchbench.spec.metrics import _drift

    assert _drift(np.array([1.0, 1.0, 1.0, 1.0])) == 0.0
    assert _drift(np.array([1.0, 1.0, 1.2, 1.2])) == pytest.approx(0.2 / 1.1)
    drifting = rec("ddp", 2, 0.5)
    drifting["summary"]["step_time_drift"] = 0.15
    steady = rec("ddp", 4, 0.5)
    steady["summary"]["step_time_drift"] = 0.01
    noisy = scaling_table([drifting, steady]).set_index("world_size")["noisy"]
    assert noisy.to_dict() == {2: True, 4: False}


def test_timed_loop_keeps_the_collector_out_of_timed_steps():
    import gc

    import torch

    from benchbench.rank.loop import timed_loop

    seen = []

    class Probe:
        def train_step(self, x, y):
            seen.append(gc.isenabled())
            return torch.zeros(())

    log = timed_loop(Probe(), [(torch.zeros(1), torch.zeros(1))] * 3, torch.device("cpu"), distributed=False)
    assert seen == [False, False, False] and gc.isenabled() and len(log.times) == 3


def test_drift_over_repeats_keeps_the_largest_magnitude_and_its_sign():
    a, b = rec("ddp", 2, 0.5, repeat=0), rec("ddp", 2, 0.5, repeat=1)
    a["summary"]["step_time_drift"], b["summary"]["step_time_drift"] = -0.12, 0.05
    row = scaling_table([a, b]).iloc[0]
    assert row["step_time_drift"] == -0.12 and bool(row["noisy"])


def repeats(times, strategy="ddp", ws=2, batch=64):
    """One record per repeat, each with the given median step time."""
    return [rec(strategy, ws, t, batch=batch, repeat=k) for k, t in enumerate(times)]


def test_throughput_is_the_mean_of_repeat_figures_with_a_t_interval():
    from scipy import stats

    times = [0.50, 0.52, 0.55, 0.49]
    row = scaling_table(repeats(times)).iloc[0]
    figures = np.array([64 / t for t in times])
    half = stats.t.ppf(0.975, 3) * figures.std(ddof=1) / 2  # t(0.975, n-1) * s / sqrt(4)
    assert row["throughput"] == pytest.approx(figures.mean())
    assert row["throughput_ci_low"] == pytest.approx(figures.mean() - half)
    assert row["throughput_ci_high"] == pytest.approx(figures.mean() + half)
    assert row["throughput_cv"] == pytest.approx(figures.std(ddof=1) / figures.mean())
    assert row["repeats"] == 4


@pytest.mark.parametrize(
    "times",
    [[0.5, 0.5], [0.5, 0.6], [0.5, 0.5, 0.5, 5.0], [0.1, 0.2, 0.3, 0.9, 0.95], [1.0, 1.0, 1.0, 1.01]],
)
def test_point_estimate_lies_inside_its_interval(times):
    row = scaling_table(repeats(times)).iloc[0]
    assert row["throughput_ci_low"] <= row["throughput"] <= row["throughput_ci_high"]


def test_one_repeat_has_no_interval_and_no_between_repeat_cv():
    row = scaling_table(repeats([0.5])).iloc[0]
    assert row["throughput"] == pytest.approx(128.0)
    assert math.isnan(row["throughput_ci_low"]) and math.isnan(row["throughput_ci_high"])
    assert math.isnan(row["throughput_cv"]) and not bool(row["noisy"])


def test_spread_between_repeats_flags_noisy_and_widens_the_interval():
    steady = scaling_table(repeats([0.50, 0.51, 0.50], ws=2)).iloc[0]
    spread = scaling_table(repeats([0.40, 0.50, 0.60], ws=2)).iloc[0]  # each repeat steady, repeats differ
    assert not bool(steady["noisy"]) and bool(spread["noisy"])
    assert spread["throughput_cv"] > 0.10 > steady["throughput_cv"]
    width = lambda r: r["throughput_ci_high"] - r["throughput_ci_low"]  # noqa: E731
    assert width(spread) > 10 * width(steady)


def test_interval_ignores_the_number_of_steps_within_a_repeat():
    """Pooling steps would shrink the interval with more steps; the repeat is the unit, so it does not."""
    short = [rec("ddp", 2, t, loss=(2.0, 1.0), repeat=k) for k, t in enumerate([0.5, 0.6])]
    long = [rec("ddp", 2, t, loss=(2.0,) * 50, repeat=k) for k, t in enumerate([0.5, 0.6])]
    a, b = scaling_table(short).iloc[0], scaling_table(long).iloc[0]
    assert (a["throughput_ci_low"], a["throughput_ci_high"]) == pytest.approx(
        (b["throughput_ci_low"], b["throughput_ci_high"])
    )


def _memory_scaling(**est: float | None) -> pd.DataFrame:
    rows = []
    for strategy, ws, state in (("single", 1, 16e6), ("zero1", 2, 12e6), ("fsdp", 2, 8e6)):
        rows.append(
            {
                "model": "m",
                "hardware": "h",
                "strategy": strategy,
                "world_size": ws,
                "throughput": 1.0,
                "speedup": 1.0,
                "efficiency": 1.0,
                "model_state_bytes": state,
                "model_state_bytes_est": est.get(strategy, state),
            }
        )
    return pd.DataFrame(rows)


def test_memory_plot_draws_measured_next_to_estimate_at_the_largest_world_size(tmp_path):
    from benchbench.results.figures.study import _memory_frame, _series, plot_scaling

    frame = _memory_frame(_series(_memory_scaling(fsdp=7.5e6)))
    assert set(frame["series"]) == {"single", "zero1", "fsdp"}  # world size 2, and the unsharded reference
    fsdp = frame[frame["series"] == "fsdp"].set_index("figure")["MiB"]
    assert fsdp["measured"] == pytest.approx(8e6 / 2**20) and fsdp["estimate"] == pytest.approx(7.5e6 / 2**20)
    (svg,) = plot_scaling(_memory_scaling(), [tmp_path / "memory.svg"])
    assert "measured vs estimate" in svg.read_text()


def test_memory_plot_without_memory_figures_is_a_placeholder_not_an_error(tmp_path):
    from benchbench.results.figures.study import plot_scaling

    old = _memory_scaling().drop(columns=["model_state_bytes", "model_state_bytes_est"])
    (svg,) = plot_scaling(old, [tmp_path / "memory.svg"])
    assert "no memory figures" in svg.read_text()
