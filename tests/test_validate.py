"""The cost model against the records (benchbench/costmodel/validate.py) and the report's Prediction
section: the errors are computed from the records each time (a changed record moves its error), the
summary's median and worst on a hand-made table, and a page that renders with no records, no
predictions or a calibration that failed."""

import json
import re
from dataclasses import replace

import pandas as pd
import pytest

from benchbench.cli import main as cli
from benchbench.costmodel import validate as v
from benchbench.costmodel.calibration import Calibration
from benchbench.results.records import study_records
from benchbench.results.report import build_report
from benchbench.spec.paths import COSTMODEL_PLOTS, PLOT_FORMATS
from tests.helpers.costmodel import (
    fake_prediction,
    measured_calibration,
    prediction_config,
    prediction_study,
    validation_records,
)

CAL = {"h": Calibration(hardware="h", source="measured")}


def test_errors_are_computed_from_the_records_and_move_with_them():
    records = validation_records()
    table = v.validate(records, CAL, fake_prediction).set_index("world_size")
    # ws2: three repeats 0.4, 0.5, 0.9 s -> the median 0.5 s is the measurement; predicted 0.5 s
    assert table.loc[2, "step_time_meas_s"] == 0.5 and table.loc[2, "repeats"] == 3
    assert table.loc[2, "step_time_err"] == pytest.approx(0.0)
    assert table.loc[1, "step_time_err"] == pytest.approx((0.5 - 1.0) / 1.0)
    assert table.loc[1, "samples_per_s_err"] == pytest.approx((64 / 0.5 - 64 / 1.0) / (64 / 1.0))
    assert table.loc[2, "model_state_err"] == pytest.approx((1000 - 801) / 801)  # median of 800, 801, 802
    assert table.loc[1, "miss"] and not table.loc[2, "miss"]
    # change one repeat's step time: the median moves, and the error with it
    records[3]["summary"]["step_time_median_s"] = 0.25  # the 0.5 s repeat of ws2
    moved = v.validate(records, CAL, fake_prediction).set_index("world_size")
    assert moved.loc[2, "step_time_meas_s"] == 0.4
    assert moved.loc[2, "step_time_err"] == pytest.approx((0.5 - 0.4) / 0.4)
    assert moved.loc[1, "step_time_err"] == table.loc[1, "step_time_err"]  # untouched configuration
    # a failed repeat is no measurement
    records[3]["status"] = "failed"
    assert v.validate(records, CAL, fake_prediction).set_index("world_size").loc[2, "repeats"] == 2


def test_prediction_is_made_for_the_records_own_job():
    seen = []
    v.validate(
        validation_records(),
        CAL,
        lambda job, cal: seen.append((job.strategy, job.world_size, job.repeat)) or fake_prediction(job, cal),
    )
    assert seen == [("single", 1, 0), ("ddp", 2, 0)]  # each configuration once, its lowest repeat's job


def test_missing_calibration_or_prediction_keeps_the_measurement_and_says_why():
    def boom(job, cal):
        raise KeyError("all_reduce")

    table = v.validate(validation_records(), {}, fake_prediction)
    assert table["step_time_err"].isna().all() and table["step_time_meas_s"].notna().all()
    assert set(table["note"]) == {"no usable calibration of h"}
    assert "no prediction: KeyError" in v.validate(validation_records(), CAL, boom)["note"].iloc[0]
    assert v.headline(v.summarize(table)) == "No configuration has both a prediction and a measurement."


def test_summary_median_and_worst_on_a_hand_made_table():
    table = pd.DataFrame(
        {
            "model": "m",
            "hardware": "h",
            "strategy": ["a", "a", "a", "b"],
            "world_size": [1, 2, 4, 2],
            "step_time_err": [0.10, -0.30, 0.05, 0.02],
            "model_state_err": [0.01, 0.02, -0.04, None],
            "bubble_err": [None, None, None, None],
        }
    )
    s = v.summarize(table).set_index("strategy")
    assert list(s.index) == ["a", "b", "all"]
    assert s.loc["a", "configurations"] == 3 and s.loc["all", "configurations"] == 4
    assert s.loc["a", "step_time_err_median"] == pytest.approx(0.10)  # median of 0.10, 0.30, 0.05
    assert s.loc["a", "step_time_err_worst"] == pytest.approx(-0.30)  # the largest |error|, sign kept
    assert s.loc["all", "step_time_err_median"] == pytest.approx(0.075)  # median of .02 .05 .10 .30
    assert s.loc["all", "model_state_err_worst"] == pytest.approx(-0.04)
    assert pd.isna(s.loc["all", "bubble_err_median"]) and s.loc["all", "worst_config"] == "a, 2 ranks (m, h)"
    text = v.headline(v.summarize(table))
    assert text.startswith("Predicted step time within 8 % (median) of measured over 4 configurations; worst 30 %")
    assert "slower than predicted: a, 2 ranks (m, h)" in text


def test_relative_error_needs_both_figures_and_a_positive_measurement():
    assert v.relative_error(1.1, 1.0) == pytest.approx(0.1)
    assert v.relative_error(None, 1.0) is None and v.relative_error(1.0, 0.0) is None
    assert v.relative_error(float("nan"), 1.0) is None and v.relative_error(True, 1.0) is None


def test_report_shows_the_prediction_section_answer_first(tmp_path):
    layout = prediction_study(tmp_path)
    assert cli.main(["report", "--study-dir", str(layout.dir)]) == 0
    html = layout.report.read_text()
    section = html.split('id="prediction"')[1].split('id="correctness"')[0]
    answer = section.index('id="prediction-answer"')
    assert answer < section.index('id="t-prediction"') < section.index('id="t-prediction-summary"')
    assert "Predicted step time within 10 % (median) of measured over 2 configurations; worst 20 %" in section
    assert "single at 1 rank (m, cpu-local): predicted 20 % slower than measured" in section  # a miss, by how much
    assert section.count('<tr class="flag">') == 1  # its row is flagged
    assert re.search(r'<td data-value="0\.(2|19999)\d*">20</td>', section)  # the error, as %, from the records
    assert 'id="t-calibration-fits"' in section and 'id="t-recommend"' in section
    assert "Step-time error (%)" in section and 'href="#def-step_time_err"' in section
    assert "for samples/s, whose\n error has the opposite sense, negative = the run was faster" in section
    assert 'id="def-step_time_err"' in html
    recommend = section.split('id="t-recommend"')[1].split("</table>")[0]
    ranks = re.findall(r'<tr><td>m</td><td>[\w-]+</td><td data-value="(\d+)">', recommend)
    assert set(map(int, ranks)) == {2, 8, 64}  # the largest measured world size and the table's


def test_report_renders_without_predictions_or_with_a_failed_calibration(tmp_path):
    bare = prediction_study(tmp_path / "a", predicted=False, calibration=None)
    assert cli.main(["report", "--study-dir", str(bare.dir)]) == 0
    assert 'id="no-prediction"' in bare.report.read_text()
    broken = prediction_study(tmp_path / "b", predicted=True, calibration="broken")
    assert cli.main(["report", "--study-dir", str(broken.dir)]) == 0
    html = broken.report.read_text()
    assert "Calibration left out:" in html and "not a usable calibration" in html and 'id="t-prediction"' in html
    empty = tmp_path / "c" / "report" / "index.html"
    build_report(records=[], tables={}, plots=[], out=empty)  # no records, no tables at all
    assert 'id="no-prediction"' in empty.read_text()


def test_recommendations_come_from_the_cost_models_recommend():
    table, notes = v.recommendations(prediction_config(), {}, None, world_sizes=(8, 1024))
    h100 = table[table["hardware"] == "h100-sxm"].set_index("world_size")
    assert list(h100.index) == [2, 8, 1024] and not notes  # the study's largest world size, then those asked
    assert (h100["basis"] == "predicted").all() and (h100["source"] == "from spec").all()
    assert (h100["margin"] >= 1).all() and h100["best_plan"].str.contains(r"\(").all()
    assert h100.loc[1024, "global_batch"] == 64 * 1024  # beyond the study: the model's batch x world size
    assert not h100["extrapolated"].any()  # from spec: no fit to reach beyond
    table, _ = v.recommendations(prediction_config(), {"cpu-local": measured_calibration()}, None, world_sizes=(1024,))
    cpu = table[table["hardware"] == "cpu-local"].set_index("world_size")
    assert not cpu.loc[2, "extrapolated"] and cpu.loc[1024, "extrapolated"]  # fitted at 2 ranks: 1,024 is beyond


def test_a_study_hardware_whose_calibration_failed_is_predicted_from_spec():
    """A Slurm study on h100-sxm whose calibration failed: its own hardware stays in the grid and
    the recommendations, from the profile's specs and labelled so, rather than vanishing."""
    cfg = {**prediction_config(), "hardware": ["h100-sxm"]}
    grid, notes = v.prediction_grid(cfg, {}, world_sizes=(2, 8))
    assert not notes and set(grid.loc[grid["hardware"] == "h100-sxm", "source"]) == {"from spec"}
    table, _ = v.recommendations(cfg, {}, None, world_sizes=(8,))
    assert set(table.loc[table["hardware"] == "h100-sxm", "source"]) == {"from spec"}


def test_the_report_flags_extrapolated_predictions_in_the_grid_and_the_recommendations(tmp_path):
    layout = prediction_study(tmp_path)
    assert cli.main(["report", "--study-dir", str(layout.dir)]) == 0
    section = layout.report.read_text().split('id="prediction"')[1].split('id="correctness"')[0]
    for table in ("t-grid", "t-recommend"):
        head = section.split(f'id="{table}"')[1].split("</thead>")[0]
        assert 'href="#def-extrapolated"' in head, table


def test_the_reports_recommended_plans_are_exact_unless_the_study_allows_lossy_ones(tmp_path):
    """The report's "Recommended plans": exact plans by default (the lossy ones counted in "Lossy
    plans left out"); with ``validate --allow-lossy`` (the study's ``allow_lossy``) a lossy plan may be
    recommended, and where it is named it says lossy, with the gate's bound (no record of it here)."""
    layout = prediction_study(tmp_path)
    cal = str(layout.calibration("cpu-local"))
    base = ["validate", "--calibration", cal, "--out-csv", str(tmp_path / "p.csv")]
    base += ["--summary-csv", str(tmp_path / "s.csv"), "--results-dir", str(layout.dir)]
    base += ["--recommendations-csv", str(layout.table("recommendations")), "--study"]
    sections = {}
    for allow in (False, True):
        study = json.dumps({**prediction_config(), "hardware": ["cpu-local", "h100-sxm"]})
        assert cli.main([*base, study, *(["--allow-lossy"] if allow else [])]) == 0
        assert cli.main(["report", "--study-dir", str(layout.dir)]) == 0
        html = layout.report.read_text().split('id="t-recommend"')[1].split("</table>")[0]
        sections[allow] = (html, pd.read_csv(layout.table("recommendations")))
    html, table = sections[False]
    assert "Lossy plans left out" in html and (table["lossy_left_out"] == 3).all()
    assert not re.search("lossy \\(|powersgd|fp16|bf16|float8", html)
    html, table = sections[True]
    lossy = table[table["best_plan"].str.contains("powersgd|fp16|bf16")]
    assert len(lossy) and lossy["best_plan"].str.contains("\\[lossy \\(").all() and (table["lossy_left_out"] == 0).all()
    assert re.search(
        r"lossy \((?:powersgd|fp16|bf16)\): gate error &lt;= [0-9.]+ \(the gate&#39;s bound; not measured\)", html
    )


def test_validate_cli_and_costmodel_plots(tmp_path, monkeypatch):
    layout = prediction_study(tmp_path, predicted=False)
    monkeypatch.setattr(v, "default_predictor", lambda: fake_prediction)
    out = {n: tmp_path / f"{n}.csv" for n in ("prediction", "prediction_summary", "predictions")}
    cal = str(layout.calibration("cpu-local"))
    args = [
        "validate",
        "--records",
        *map(str, study_records(layout)),
        "--calibration",
        cal,
        "--out-csv",
        str(out["prediction"]),
        "--summary-csv",
        str(out["prediction_summary"]),
        "--predictions-csv",
        str(out["predictions"]),
        "--recommendations-csv",
        str(tmp_path / "r.csv"),
        "--results-dir",
        str(layout.dir),
        "--study",
        json.dumps(prediction_config()),
    ]
    assert cli.main(args) == 0
    assert len(pd.read_csv(out["prediction"])) == 2
    grid = pd.read_csv(out["predictions"])
    assert set(grid["world_size"]) == set(v.WORLD_SIZES) and {"cpu-local", "h100-sxm"} <= set(grid["hardware"])
    assert grid.loc[grid["hardware"] == "h100-sxm", "source"].dropna().eq("from spec").all()
    assert set(pd.read_csv(tmp_path / "r.csv")["world_size"]) == {2, 8, 64, 1024}
    plots = [tmp_path / f"{n}.{f}" for n in COSTMODEL_PLOTS for f in PLOT_FORMATS]
    args = [
        "plot-costmodel",
        "--calibration",
        str(layout.calibration("cpu-local")),
        "--predictions",
        str(out["predictions"]),
        "--out",
        *map(str, plots),
    ]
    assert cli.main(args) == 0
    for p in plots:
        assert p.stat().st_size > 1000
    assert "no data" not in (tmp_path / "busbw.svg").read_text()
    assert "no data" not in (tmp_path / "predicted.svg").read_text()
    # fitted at 2 ranks: the measured panel says where extrapolation starts; from spec has no fit to leave
    # (each title wrapped: one SVG text per line)
    svg = (tmp_path / "predicted.svg").read_text()
    assert re.search(r">cpu-local<.*?>\(measured; extrapolated<.*?>from 4 ranks\)<", svg, re.S)
    assert re.search(r">h100-sxm<.*?>\(from spec\)<", svg, re.S)


@pytest.mark.parametrize("study", ["{bad", None, "missing.yaml"])
def test_validate_refuses_a_bad_study_before_writing_anything(tmp_path, study, capsys):
    out = tmp_path / "prediction.csv"
    args = [
        "validate",
        "--out-csv",
        str(out),
        "--summary-csv",
        str(tmp_path / "s.csv"),
        "--predictions-csv",
        str(tmp_path / "p.csv"),
        *(["--study", study] if study else []),
    ]
    assert cli.main(args) == 2
    assert "--study" in capsys.readouterr().err or study == "missing.yaml"
    assert list(tmp_path.iterdir()) == []


def test_a_failed_calibration_draws_a_no_data_busbw(tmp_path):
    from benchbench.results.figures.costmodel import calibration_points, plot_costmodel

    written = plot_costmodel(
        calibration_points([replace(measured_calibration(), points=[])]),
        pd.DataFrame(),
        [tmp_path / "busbw.svg", tmp_path / "predicted.svg"],
    )
    assert len(written) == 2 and "no data" in (tmp_path / "busbw.svg").read_text()
