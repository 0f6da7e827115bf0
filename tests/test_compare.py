"""``benchbench compare BASE NEW``: verdicts, exit status and input handling, on synthetic runs."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchbench.cli import main as cli
from benchbench.protocol.record import make_record, write_record
from benchbench.results.compare import (
    COLUMNS,
    FASTER,
    NO_TEST,
    ONLY_BASE,
    ONLY_NEW,
    SAME,
    SLOWER,
    compare,
    load_stats,
    repeat_stats,
)
from benchbench.spec.config import ROOT
from benchbench.spec.metrics import COMPARISON, METRICS
from benchbench.spec.paths import StudyLayout
from tests.helpers.jobs import make_test_job
from tests.helpers.records import rec

CONFIG = {"model": "m", "hardware": "h", "strategy": "ddp", "world_size": 2}


def runs(figures, status="ok", batch=64, **config):
    """runs.csv rows: one per repeat, with the given samples_per_s."""
    cfg = {**CONFIG, **config, "status": status, "global_batch": batch}
    return pd.DataFrame([{**cfg, "repeat": k, "samples_per_s": f} for k, f in enumerate(figures)])


def noisy(mean, n=5, rel_sd=0.01, seed=0):
    """n repeat figures around ``mean`` with a relative spread of ``rel_sd`` (seeded)."""
    return list(mean * (1 + rel_sd * np.random.default_rng(seed).standard_normal(n)))


def verdict_of(base_figures, new_figures, **kw):
    table = compare(repeat_stats(runs(base_figures)), repeat_stats(runs(new_figures)), **kw)
    return table.iloc[0]


def test_identical_distributions_are_no_significant_change():
    row = verdict_of(noisy(100.0, seed=1), noisy(100.0, seed=2))
    assert row["verdict"] == SAME and row["p_value"] > 0.05
    assert row["ratio_ci_low"] <= 1.0 <= row["ratio_ci_high"]


def test_a_20_percent_slowdown_with_low_noise_is_slower():
    row = verdict_of(noisy(100.0, seed=1), noisy(80.0, seed=2))
    assert row["verdict"] == SLOWER and row["p_value"] < 1e-6
    assert row["ratio"] == pytest.approx(0.8, abs=0.02)
    assert row["ratio_ci_low"] <= row["ratio"] <= row["ratio_ci_high"] < 1.0


def test_a_speedup_is_faster():
    row = verdict_of(noisy(100.0, seed=1), noisy(125.0, seed=2))
    assert row["verdict"] == FASTER and row["ratio"] > 1.2


def test_p_value_is_welchs_t_test_on_the_repeat_figures():
    base, new = noisy(100.0, n=4, rel_sd=0.05, seed=3), noisy(96.0, n=6, rel_sd=0.01, seed=4)
    row = verdict_of(base, new)
    assert row["p_value"] == pytest.approx(stats.ttest_ind(new, base, equal_var=False).pvalue)
    assert row["ratio"] == pytest.approx(np.mean(new) / np.mean(base))


def test_interval_excludes_one_exactly_when_the_test_is_significant():
    for seed in range(20):
        row = verdict_of(noisy(100.0, n=3, rel_sd=0.03, seed=seed), noisy(97.0, n=3, rel_sd=0.03, seed=seed + 50))
        excludes_one = not row["ratio_ci_low"] <= 1.0 <= row["ratio_ci_high"]
        assert excludes_one == (row["p_value"] < 0.05), seed


def test_significant_but_within_the_threshold_is_no_change():
    base, new = noisy(100.0, n=10, rel_sd=0.001, seed=1), noisy(99.0, n=10, rel_sd=0.001, seed=2)
    row = verdict_of(base, new)
    assert row["p_value"] < 0.05 and row["verdict"] == SAME and "within" in row["note"]
    assert verdict_of(base, new, threshold=0.005)["verdict"] == SLOWER


def test_noise_hides_a_small_change():
    row = verdict_of([80.0, 100.0, 120.0], [72.0, 90.0, 108.0])  # 10 % slower, repeats spread ±20 %
    assert row["verdict"] == SAME and row["p_value"] > 0.05


def test_one_repeat_compares_against_the_threshold_only():
    slow = verdict_of([100.0], [80.0])
    assert slow["verdict"] == "slower?" and slow["note"].startswith(NO_TEST)
    assert math.isnan(slow["p_value"]) and math.isnan(slow["ratio_ci_low"])
    assert verdict_of([100.0, 101.0], [120.0])["verdict"] == "faster?"
    assert verdict_of([100.0], [101.0])["verdict"] == SAME


def test_configurations_on_one_side_are_listed_not_errors():
    base = repeat_stats(pd.concat([runs([100.0, 101.0]), runs([50.0], strategy="fsdp")]))
    new = repeat_stats(pd.concat([runs([100.0, 100.5]), runs([70.0, 71.0], world_size=4)]))
    table = compare(base, new).set_index(["strategy", "world_size"])
    assert table.loc[("fsdp", 2), "verdict"] == ONLY_BASE
    assert table.loc[("ddp", 4), "verdict"] == ONLY_NEW
    assert table.loc[("ddp", 2), "verdict"] == SAME


def test_failed_runs_do_not_count():
    base = repeat_stats(pd.concat([runs([100.0, 101.0]), runs([1.0], status="failed")]))
    assert base.iloc[0]["n"] == 2 and base.iloc[0]["mean"] == pytest.approx(100.5)


def test_columns_are_the_registry():
    assert COLUMNS[4:] == [m.name for m in COMPARISON]
    assert {m.name for m in COMPARISON} <= set(METRICS)


def write_study(root, study, figures_by_strategy, batch=64):
    """Records of a study under ``root``: one per repeat, each with its samples_per_s."""
    layout = StudyLayout(study, root)
    for strategy, figures in figures_by_strategy.items():
        for k, f in enumerate(figures):
            job = make_test_job(strategy, 2, study=study, global_batch=batch, repeat=k, steps=2)
            summary = {"step_time_median_s": batch / f, "samples_per_s": f, "step_time_cv": 0.0}
            rec = make_record(job=job, status="ok", step_time_s=[batch / f] * 2, loss=[2.0, 1.0], summary=summary)
            write_record(rec, layout.record(job))
    return layout.dir


def test_cli_exit_status_and_csv(tmp_path, capsys):
    base = write_study(tmp_path / "a", "s", {"ddp": noisy(100.0, seed=1), "fsdp": noisy(50.0, seed=3)})
    same = write_study(tmp_path / "b", "s", {"ddp": noisy(100.0, seed=2), "fsdp": noisy(50.0, seed=4)})
    slow = write_study(tmp_path / "c", "s", {"ddp": noisy(80.0, seed=2), "fsdp": noisy(50.0, seed=4)})
    fast = write_study(tmp_path / "d", "s", {"ddp": noisy(125.0, seed=2), "fsdp": noisy(50.0, seed=4)})
    assert cli.main(["compare", str(base), str(same)]) == 0
    assert "2 configurations compared: 2 no significant change" in capsys.readouterr().out
    assert cli.main(["compare", str(base), str(slow), "--csv", str(tmp_path / "cmp.csv")]) == 1
    out = capsys.readouterr().out
    assert "1 slower, 1 no significant change" in out and "records under" in out
    table = pd.read_csv(tmp_path / "cmp.csv")
    assert list(table.columns) == COLUMNS and set(table["verdict"]) == {SLOWER, SAME}
    assert cli.main(["compare", str(base), str(fast)]) == 0
    assert "1 faster" in capsys.readouterr().out
    assert cli.main(["compare", str(base), str(slow), "--threshold", "0.5"]) == 0  # 20 % is within ±50 %


def test_tables_are_read_when_the_records_are_gone(tmp_path):
    study = write_study(tmp_path, "s", {"ddp": [100.0, 101.0, 99.0]})
    from benchbench.results.tables import aggregate

    records = sorted((study / "raw").rglob("*.json"))
    aggregate(records, {n: study / "tables" / f"{n}.csv" for n in ("runs", "scaling", "dropped")})
    from_records, what = load_stats(study)
    assert "records under" in what
    for path in records:
        path.unlink()
    from_runs, what = load_stats(study)
    assert what.endswith("runs.csv")
    (study / "tables" / "runs.csv").unlink()
    from_scaling, what = load_stats(study)
    assert what.endswith("scaling.csv")
    for other in (from_runs, from_scaling):
        assert other[["n", "mean", "sd"]].to_numpy() == pytest.approx(from_records[["n", "mean", "sd"]].to_numpy())


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda tmp: [tmp / "nowhere", tmp / "nowhere"], "no such results folder or runs.csv file"),
        (lambda tmp: [tmp, tmp], "no records under"),
        (lambda tmp: [tmp / "odd.csv", tmp / "odd.csv"], "lacks the column(s)"),
        (lambda tmp: [tmp / "broken", tmp / "broken"], "cannot read the records"),
        (lambda tmp: [tmp / "a.csv", tmp / "b.csv"], "no configuration (model, hardware, strategy, world size)"),
        (lambda tmp: [tmp / "a.csv", tmp / "a.csv", "--alpha", "2"], "need 0 < alpha < 1"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, capsys, make_args, message):
    pd.DataFrame({"x": [1]}).to_csv(tmp_path / "odd.csv", index=False)
    (tmp_path / "broken" / "raw").mkdir(parents=True)
    (tmp_path / "broken" / "raw" / "ws2-r0.json").write_text("{ not json")
    runs([100.0, 101.0]).to_csv(tmp_path / "a.csv", index=False)
    runs([100.0, 101.0], model="other").to_csv(tmp_path / "b.csv", index=False)
    assert cli.main(["compare", *map(str, make_args(tmp_path))]) == 2
    assert message in capsys.readouterr().err


def test_compare_end_to_end_through_python_m_benchbench(tmp_path):
    runs(noisy(100.0, seed=1)).to_csv(tmp_path / "base.csv", index=False)
    runs(noisy(80.0, seed=2)).to_csv(tmp_path / "new.csv", index=False)
    done = subprocess.run(
        [sys.executable, "-m", "benchbench", "compare", str(tmp_path / "base.csv"), str(tmp_path / "new.csv")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "1 configurations compared: 1 slower" in done.stdout and "ratio" in done.stdout


def test_a_strategy_name_built_differently_on_the_two_sides_is_noted():
    base = runs(noisy(100.0, seed=1)).assign(applied="pipeline(Schedule1F1B, stages=2, micro-batches=4) → AdamW")
    new = runs(noisy(100.0, seed=2)).assign(applied="pipeline(Schedule1F1B, stages=2, micro-batches=8) → AdamW")
    row = compare(repeat_stats(base), repeat_stats(new)).iloc[0]
    assert "plan differs (pipeline(Schedule1F1B, stages=2, micro-batches=4)" in row["note"]
    same = compare(repeat_stats(base), repeat_stats(base)).iloc[0]
    assert "plan differs" not in same["note"]


def test_a_configuration_lost_in_new_fails_the_gate_unless_allowed(tmp_path, capsys):
    runs([100.0, 101.0]).to_csv(tmp_path / "base.csv", index=False)
    pd.concat([runs([100.0, 101.0]), runs([50.0, 51.0], world_size=4)]).to_csv(tmp_path / "more.csv", index=False)
    crashed = runs([50.0, 51.0], world_size=4)
    crashed["status"] = "failed"  # NEW crashed where BASE ran
    pd.concat([runs([100.0, 101.0]), crashed]).to_csv(tmp_path / "lost.csv", index=False)
    assert cli.main(["compare", str(tmp_path / "base.csv"), str(tmp_path / "more.csv")]) == 0  # only in NEW: fine
    assert cli.main(["compare", str(tmp_path / "more.csv"), str(tmp_path / "base.csv")]) == 1  # only in BASE
    assert cli.main(["compare", str(tmp_path / "more.csv"), str(tmp_path / "lost.csv")]) == 1
    assert cli.main(["compare", str(tmp_path / "more.csv"), str(tmp_path / "lost.csv"), "--allow-missing"]) == 0
    assert ONLY_BASE in capsys.readouterr().out


def test_an_unreadable_record_in_new_is_bad_input_not_a_pass(tmp_path, capsys):
    for side in ("base", "new"):
        (tmp_path / side / "raw").mkdir(parents=True)
        for i in range(2):
            (tmp_path / side / "raw" / f"ws1-r{i}.json").write_text(json.dumps(rec("single", 1, 1.0, repeat=i)))
    assert cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "new")]) == 0
    (tmp_path / "new" / "raw" / "ws1-r1.json").write_text('{"schema_version": 4, "sta')
    assert cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "new")]) == 2
    assert "cannot read the records (1 unusable)" in capsys.readouterr().err
