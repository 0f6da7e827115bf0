"""The answer first (benchbench/results/findings.py): known tables in, known findings and sentences out."""

import pandas as pd

from benchbench.results.findings import NOT_TESTED, findings, sentence, summary_table

KEY = {"model": "gpt-small", "hardware": "cpu-local", "world_size": 2}


def _runs(per_strategy: dict[str, list[float]], correct: dict[str, str] | None = None) -> pd.DataFrame:
    rows = [
        {
            **KEY,
            "strategy": s,
            "repeat": i,
            "status": "ok",
            "samples_per_s": v,
            "global_batch": 8,
            "correct": (correct or {}).get(s, "match"),
        }
        for s, vs in per_strategy.items()
        for i, v in enumerate(vs)
    ]
    return pd.DataFrame(rows)


def _scaling(runs: pd.DataFrame, efficiency: dict[str, float] | None = None) -> pd.DataFrame:
    g = runs.groupby(["model", "hardware", "strategy", "world_size"], sort=True)
    s = g.agg(throughput=("samples_per_s", "mean"), correct=("correct", "first"), repeats=("repeat", "size"))
    s = s.reset_index()
    s["noisy"] = False
    s["efficiency"] = [(efficiency or {}).get(x, 0.5) for x in s["strategy"]]
    return s


NO_FAILURES = pd.DataFrame(columns=["model", "hardware", "strategy", "world_size", "kind", "count", "message"])


def test_significant_winner_with_margin_and_efficiency():
    runs = _runs({"ddp": [142, 143, 141], "dp-naive": [100, 101, 99]}, {"dp-naive": "match"})
    (f,) = findings(_scaling(runs, {"ddp": 0.71, "dp-naive": 0.5}), runs, NO_FAILURES)
    assert (f.winner, f.runner_up, f.significance) == ("ddp", "dp-naive", "significant")
    assert abs(f.ratio - 1.42) < 1e-9 and f.p_value < 0.05 and f.best_efficiency == 0.71
    text = str(sentence(f))
    assert text.startswith("gpt-small on cpu-local at 2 ranks: <b>ddp</b> is fastest, 1.42× dp-naive (significant")
    assert "; best efficiency 71% (ddp)." in text  # the unit of the table's "Best efficiency (%)"
    from benchbench.results.htmltable import data_table

    assert '<td data-value="0.71">71</td>' in data_table(summary_table([f]), "f")


def test_tie_within_noise_is_not_significant():
    runs = _runs({"ddp": [100, 120, 90], "fsdp": [105, 95, 101]})
    (f,) = findings(_scaling(runs), runs, NO_FAILURES)
    assert f.significance == "not significant" and f.p_value > 0.05
    assert "not significant, p = " in str(sentence(f))


def test_equally_fast_strategies_tie_not_significant():
    runs = _runs({"fsdp": [100, 102, 98], "ddp": [101, 99, 100]})
    (f,) = findings(_scaling(runs), runs, NO_FAILURES)
    assert (f.winner, f.runner_up, f.ratio, f.significance) == ("ddp", "fsdp", 1.0, "not significant")
    assert "<b>ddp</b> is fastest, 1.00× fsdp (not significant, p = 1)" in str(sentence(f))


def test_one_repeat_is_not_tested():
    runs = _runs({"ddp": [150], "fsdp": [100]})
    (f,) = findings(_scaling(runs), runs, NO_FAILURES)
    assert f.significance == NOT_TESTED and f.ratio == 1.5
    assert "1.50× fsdp (1 repeat: not tested)" in str(sentence(f))


def test_only_failed_runs():
    failures = pd.DataFrame(
        [{**KEY, "strategy": s, "kind": "out_of_memory", "count": 1, "message": "m"} for s in ("ddp", "fsdp")]
    )
    (f,) = findings(pd.DataFrame(), pd.DataFrame(), failures)
    assert f.winner == "" and f.failed == {"out_of_memory": ["ddp", "fsdp"]}
    assert str(sentence(f)).endswith("no strategy ran ok. ddp, fsdp failed (out_of_memory).")
    assert summary_table([f])["fastest"].tolist() == ["—"]


def test_no_correct_run_and_mismatch_named():
    runs = _runs({"ddp": [150, 151], "dp-naive": [100, 99]}, {"ddp": "MISMATCH", "dp-naive": "MISMATCH"})
    (f,) = findings(_scaling(runs), runs, NO_FAILURES)
    assert f.winner == "" and f.mismatched == ["ddp", "dp-naive"]
    assert "no strategy passed the correctness gate. ddp, dp-naive mismatched the gate." in str(sentence(f))


def test_mismatched_faster_strategy_does_not_win_and_names_are_escaped():
    runs = _runs({"<b>x": [300, 301], "ddp": [100, 101]}, {"<b>x": "MISMATCH"})
    scaling = _scaling(runs)
    scaling.loc[scaling["strategy"] == "ddp", "noisy"] = True
    (f,) = findings(scaling, runs, NO_FAILURES)
    assert f.winner == "ddp" and f.runner_up == "" and f.noisy == ["ddp"]
    text = str(sentence(f))
    assert "the only correct strategy" in text and "&lt;b&gt;x mismatched the gate" in text and "<b>x" not in text
    assert "ddp was noisy." in text


def test_lossy_counts_as_correct_and_scaling_stats_fallback():
    runs = _runs({"ddp-fp16": [200, 202], "ddp": [100, 101]}, {"ddp-fp16": "lossy"})
    scaling = _scaling(runs).assign(throughput_cv=0.01)
    (f,) = findings(scaling, pd.DataFrame(), NO_FAILURES)  # no runs.csv: from scaling's statistics
    assert f.winner == "ddp-fp16" and f.significance == "significant"
    assert f.winner_lossy and "<b>ddp-fp16</b> (lossy) is fastest, 2.00× ddp " in str(sentence(f))
