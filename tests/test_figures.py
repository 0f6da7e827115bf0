"""The study's figures: each drawn from a small synthetic scaling table when the table has its data,
a "no data: <why>" figure (and ``has_data: false`` in figures.json) when not; one colour per
strategy everywhere; captions in one place, the same in Snakemake's report."""

from __future__ import annotations

import itertools
import json
import re

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from benchbench.results.figures import study as plots
from benchbench.results.figures.captions import caption_rst
from benchbench.results.figures.palette import PRESET_COLOURS, strategy_colour
from benchbench.spec.config import ROOT
from benchbench.spec.paths import COSTMODEL_PLOTS, PLOT_FORMATS, PLOTS, PREDICTION_TABLES, TABLES, StudyLayout
from benchbench.spec.plan import PRESETS

# strategy -> (world sizes, dp, tp, pp, micro-batches)
PLANS = {
    "single": ([1], 1, 1, 1, 0),
    "ddp": ([1, 2, 4], None, 1, 1, 0),
    "ddp-fp16": ([2, 4], None, 1, 1, 0),
    "pp-1f1b": ([2, 4], 1, 1, None, 8),
    "3d": ([8], 2, 2, 2, 4),
}


def _row(strategy: str, ws: int, dp: int | None, tp: int, pp: int | None, m: int) -> dict:
    pp = ws if pp is None else pp
    dp = ws // (tp * pp) if dp is None else dp
    thr = 100.0 * ws**0.8
    pipe = f"pipeline(Schedule1F1B, stages={pp}, here=[0], micro-batches={m}) → AdamW" if m else "ddp(2) → AdamW"
    return {
        "model": "gpt",
        "hardware": "cpu-local",
        "strategy": strategy,
        "world_size": ws,
        "dp": dp,
        "tp": tp,
        "pp": pp,
        "throughput": thr,
        "throughput_ci_low": 0.9 * thr,
        "throughput_ci_high": 1.1 * thr,
        "speedup": thr / 100,
        "efficiency": thr / 100 / ws,
        "step_time_median_s": 32 / thr,
        "applied": pipe,
        "exposed_comm_s": 0.1 * 32 / thr if strategy.startswith("ddp") and ws > 1 else np.nan,
        "bubble_fraction_measured": 0.25 if m else np.nan,
        "peak_mem_mb": 400 / ws + 10,
        "model_state_bytes": 4e6 / ws,
        "model_state_bytes_est": 3.9e6 / ws,
        "comm_bytes_per_step": (2**19 if "fp16" in strategy else 2**20) if ws > 1 else 0.0,
        "loss_dev": 1e-3 if "fp16" in strategy else 0.0,
        "lossy": "fp16" in strategy,
        "mfu": np.nan,
    }


def full_table() -> pd.DataFrame:
    return pd.DataFrame([_row(s, ws, *plan) for s, (wss, *plan) in PLANS.items() for ws in wss])


#: For each figure, the table without its data, and the start of why.
WITHOUT = {
    "throughput": (lambda t: t.iloc[0:0], plots.NO_OK_RUNS),
    "efficiency": (lambda t: t.assign(efficiency=np.nan), plots.NO_BASELINE),
    "best": (lambda t: t.iloc[0:0], plots.NO_OK_RUNS),
    "breakdown": (lambda t: t.drop(columns="step_time_median_s"), plots.NO_STEP_TIMES),
    "memory": (lambda t: t.drop(columns=["model_state_bytes", "model_state_bytes_est"]), plots.NO_MEMORY),
    "bubble": (lambda t: t[t["strategy"].isin(["single", "ddp"])], plots.NO_PIPELINE),
    "compression": (lambda t: t[t["strategy"] != "ddp-fp16"], plots.NO_COMPRESSION),
    "pareto": (lambda t: t.drop(columns="peak_mem_mb"), plots.NO_PEAK_MEMORY),
}


def _index(table: pd.DataFrame, tmp_path, names=PLOTS) -> dict[str, dict]:
    outputs = [tmp_path / f"{n}.{f}" for n in names for f in PLOT_FORMATS]
    written = plots.plot_scaling(table, outputs, tmp_path / "figures.json")
    assert sorted(written) == sorted(outputs)
    entries = json.loads((tmp_path / "figures.json").read_text())
    assert [e["name"] for e in entries] == list(PLOTS)
    assert all(set(e) == {"name", "caption", "has_data", "why"} for e in entries)
    return {e["name"]: e for e in entries}


def test_every_figure_has_data_from_a_full_table_and_the_index_says_so(tmp_path):
    index = _index(full_table(), tmp_path)
    assert {n: (e["has_data"], e["why"]) for n, e in index.items()} == dict.fromkeys(PLOTS, (True, ""))
    assert {n: e["caption"] for n, e in index.items()} == {n: plots.CAPTIONS[n] for n in PLOTS}
    for name in PLOTS:
        svg = (tmp_path / f"{name}.svg").read_text()
        assert "no data" not in svg and "could not draw" not in svg, name
        assert float(re.search(r'<svg[^>]* width="([\d.]+)pt"', svg).group(1)) * 4 / 3 > 800  # px, laptop width


@pytest.mark.parametrize("name", PLOTS)
def test_a_figure_without_its_data_says_why(tmp_path, name):
    without, why = WITHOUT[name]
    entry = _index(without(full_table()), tmp_path, [name])[name]
    assert (entry["has_data"], entry["why"]) == (False, why)
    assert "no data: " + why[:30].replace("'", "&#x27;") in (tmp_path / f"{name}.svg").read_text()


def test_throughput_is_drawn_on_log_log_axes_with_the_ideal_line_and_error_bars():
    fig = plots._throughput(plots._series(full_table()))
    (ax,) = [a for a in fig.axes if a.get_title() == "gpt"]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4", "8"]
    ideal = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(ideal) == 1 and list(ideal[0].get_ydata()) == pytest.approx([100, 200, 400, 800])
    assert ax.containers and any(c.has_yerr for c in ax.containers)  # the 95 % intervals


def test_best_figure_labels_the_plan_and_colours_relative_throughput():
    best, what = plots._best_frame(plots._series(full_table()))
    assert what == "throughput / row's best"
    assert best.set_index("world_size")["strategy"].to_dict() == {1: "single", 2: "ddp", 4: "ddp", 8: "3d"}
    assert best["value"].max() == 1.0
    three_d = best[best["strategy"] == "3d"].iloc[0]
    assert plots.plan_label(three_d) == "dp2·tp2·pp2 1f1b m4"
    assert plots.plan_label(best[best["strategy"] == "single"].iloc[0]) == "1 rank"
    with_mfu, what = plots._best_frame(plots._series(full_table().assign(mfu=0.3)))
    assert what == "MFU" and set(with_mfu["value"]) == {0.3}


def test_breakdown_parts_add_up_to_the_step_time_and_other_is_the_rest():
    frame = plots._breakdown_frame(plots._series(full_table()))
    assert set(frame["world_size"]) == {8}  # the model's largest world size
    row = frame.iloc[0]
    parts = row[list(plots.COMPONENTS)]
    assert parts.sum() == pytest.approx(row["step_ms"])
    assert row["bubble"] == pytest.approx(0.25 * row["step_ms"])
    assert row["ideal (T₁/N)"] == pytest.approx(row["efficiency"] * row["step_ms"])


def test_bubble_frame_reads_stages_and_micro_batches():
    frame = plots._bubble_frame(plots._series(full_table()))
    assert sorted(zip(frame["strategy"], frame["p"], frame["m"], strict=True)) == [
        ("3d", 2, 4),
        ("pp-1f1b", 2, 8),
        ("pp-1f1b", 4, 8),
    ]


def test_pareto_front_of_a_known_set():
    points = pd.DataFrame(
        {"peak_mem_mb": [100, 200, 150, 300, 100, 250], "throughput": [10, 30, 5, 40, 12, 30]}, index=list("abcdef")
    )
    front = plots.pareto_front(points)
    assert list(front.index) == ["e", "b", "d"]  # a (same memory, slower than e), c, f dominated
    assert plots.pareto_front(points.iloc[0:0]).empty


def test_palette_is_stable_and_distinct_for_the_presets():
    assert set(PRESET_COLOURS) == set(PRESETS)
    rgb = {n: np.array(mcolors.to_rgb(c)) for n, c in PRESET_COLOURS.items()}
    for (a, x), (b, y) in itertools.combinations(rgb.items(), 2):
        assert np.linalg.norm(x - y) > 0.15, (a, b)
    assert strategy_colour("ddp") == PRESET_COLOURS["ddp"]
    custom = strategy_colour("ddp-1mb")
    assert re.fullmatch(r"#[0-9a-f]{6}", custom) and custom == strategy_colour("ddp-1mb")
    assert custom != strategy_colour("pp-8mb")


def test_the_same_strategy_has_the_same_colour_in_every_figure():
    for name in ("throughput", "efficiency", "pareto"):
        fig = plots._DRAW[name](plots._series(full_table()))
        labels = {t.get_text(): t for t in fig.legends[0].get_texts()}
        handles = dict(zip(labels, fig.legends[0].legend_handles, strict=True))
        assert mcolors.to_hex(handles["3d"].get_color()) == PRESET_COLOURS["3d"], name


def test_caption_files_match_the_captions():
    assert set(plots.CAPTIONS) == set(PLOTS + COSTMODEL_PLOTS)
    for name in PLOTS + COSTMODEL_PLOTS:
        assert (ROOT / "workflow" / "report" / f"{name}.rst").read_text() == caption_rst(name), name
    for table in TABLES + PREDICTION_TABLES:
        assert (ROOT / "workflow" / "report" / "tables" / f"{table}.rst").read_text().strip(), table


def test_every_plot_and_table_output_goes_into_snakemakes_report():
    rules = ROOT / "workflow" / "rules"
    plot_rule = (rules / "plot.smk").read_text()
    assert re.search(r"plots=\[\s*report\(\s*str\(p\),\s*caption=f\"\.\./report/\{p\.stem\}\.rst\"", plot_rule)
    assert "for p in LAYOUT.plots()" in plot_rule and "index=str(LAYOUT.figures_index)" in plot_rule
    aggregate = (rules / "aggregate.smk").read_text()
    for table in TABLES:
        assert f'{table}=report(str(LAYOUT.table("{table}")), caption="../report/tables/{table}.rst"' in aggregate
    assert 'report: "workflow/report/workflow.rst"' in (ROOT / "Snakefile").read_text()
    assert StudyLayout("s").figures_index.name == "figures.json"
    costmodel = (rules / "costmodel.smk").read_text()
    assert "for p in LAYOUT.costmodel_plots()" in costmodel and 'caption=f"../report/{p.stem}.rst"' in costmodel
    for table in PREDICTION_TABLES:
        assert f'report(str(LAYOUT.table("{table}")), caption="../report/tables/{table}.rst"' in costmodel


def test_best_and_pareto_leave_out_runs_that_failed_the_correctness_gate():
    table = full_table().assign(correct=lambda t: np.where(t["strategy"] == "ddp-fp16", "lossy", "match"))
    wrong = _row("ddp-fp16", 4, None, 1, 1, 0) | {"throughput": 1e4, "peak_mem_mb": 1.0, "correct": "MISMATCH"}
    data = plots._series(pd.concat([table, pd.DataFrame([wrong])], ignore_index=True))
    best, _ = plots._best_frame(data)
    assert best.set_index("world_size")["strategy"].to_dict() == {1: "single", 2: "ddp", 4: "ddp", 8: "3d"}
    assert "MISMATCH" not in set(best["correct"])
    assert plots._best_frame(data.drop(columns="correct"))[0].set_index("world_size")["strategy"][4] == "ddp-fp16"
    ax = plots._pareto(data).axes[0]
    front = next(line for line in ax.get_lines() if line.get_linestyle() == "-")
    assert 1.0 not in list(front.get_xdata()) and 1e4 not in list(front.get_ydata())
    (hollow,) = [ln for ln in ax.get_lines() if list(ln.get_xdata()) == [1.0]]
    assert hollow.get_markerfacecolor() == "none" and mcolors.to_hex(hollow.get_color()) == "#999999"
    assert plots._best(data.assign(correct="MISMATCH")) == plots.NO_CORRECT_RUNS


def test_breakdown_names_the_ideal_share_and_caps_exposed_comm_and_bubble():
    assert list(plots.COMPONENTS) == ["ideal (T₁/N)", "exposed comm", "bubble", "other scaling loss"]
    base = {
        "model": "m",
        "hardware": "h",
        "strategy": "pp",
        "world_size": 2,
        "step_time_median_s": 1.0,
        "efficiency": 0.5,
        "throughput": 10.0,
    }
    rows = pd.DataFrame(
        [
            base | {"model": "comm", "exposed_comm_s": 0.8, "bubble_fraction_measured": 0.3},  # comm > 0.5 left
            base | {"model": "bubble", "exposed_comm_s": 0.2, "bubble_fraction_measured": 0.9},  # bubble > 0.3 left
            base | {"model": "negative", "exposed_comm_s": -0.1, "bubble_fraction_measured": 0.1},
        ]
    )
    frame = plots._breakdown_frame(plots._series(rows)).set_index("model")
    parts = frame[list(plots.COMPONENTS)].round(9)
    assert parts.loc["comm"].tolist() == [500, 500, 0, 0]
    assert parts.loc["bubble"].tolist() == [500, 200, 300, 0]
    assert parts.loc["negative"].tolist() == [500, 0, 100, 400]


def test_bubble_figure_draws_each_rows_theory_for_its_schedule():
    table = full_table().assign(bubble_fraction_theoretical=lambda t: np.where(t["strategy"] == "3d", 0.05, np.nan))
    fig = plots._bubble(plots._series(table))
    ax = fig.axes[0]
    (own,) = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == [0.05]]
    assert list(own.get_xdata()) == [4] and own.get_markerfacecolor() == "none"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "GPipe/1F1B theory (p-1)/(m+p-1)" in labels and "theory for its schedule" in labels
    assert "above their own theory marker" in plots.CAPTIONS["bubble"]


def test_a_name_matplotlib_would_read_as_maths_prints_literally(tmp_path):
    index = _index(full_table().assign(model=r"m$\foo$"), tmp_path)
    assert all(e["has_data"] for e in index.values()), index
    assert r"m$\foo$" in (tmp_path / "throughput.svg").read_text()


def test_a_figure_that_fails_while_saving_is_still_written_saying_why(tmp_path, monkeypatch):
    def unsavable(data):
        fig = plots._throughput(data)
        fig.axes[0].text(0, 0, r"$\foo$", parse_math=True)  # mathtext raises at savefig
        return fig

    monkeypatch.setitem(plots._DRAW, "throughput", unsavable)
    entry = _index(full_table(), tmp_path)["throughput"]
    assert not entry["has_data"] and entry["why"].startswith("could not draw this plot")
    assert "could not draw" in (tmp_path / "throughput.svg").read_text()
    assert (tmp_path / "throughput.png").stat().st_size > 1000


def test_svg_files_are_byte_identical_when_drawn_twice(tmp_path):
    _index(full_table(), tmp_path / "a")
    _index(full_table(), tmp_path / "b")
    for name in PLOTS:
        assert (tmp_path / "a" / f"{name}.svg").read_bytes() == (tmp_path / "b" / f"{name}.svg").read_bytes(), name


def test_compression_figure_says_payload_bytes_not_bytes_on_the_wire():
    texts = [plots.TITLES["compression"], plots.CAPTIONS["compression"], plots.NO_COMPRESSION]
    assert "payload bytes to collectives per step" in plots.TITLES["compression"]
    assert not any("on the wire" in t for t in texts)
    fig = plots._compression(plots._series(full_table()))
    assert fig.axes[0].get_xlabel().startswith("payload bytes to collectives")


def _panel_title_collisions(fig) -> list[tuple[str, str]]:
    """(a panel's title, the text it runs into) for every overlap of matplotlib's own text extents
    (``get_window_extent`` with the figure's renderer): each panel title against the other panels'
    titles and axes (tick labels and axis labels: ``get_tightbbox``) and the figure's title."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    panels = [ax for ax in fig.axes if ax.get_title()]
    found = []
    for ax in panels:
        box = ax.title.get_window_extent(renderer)
        others = [(fig.get_suptitle(), fig._suptitle.get_window_extent(renderer))] if fig._suptitle else []
        for other in panels:
            if other is not ax:
                others += [(other.get_title(), other.title.get_window_extent(renderer))]
                others += [
                    (f"{other.get_title()}: {a.axis_name} axis", a.get_tightbbox(renderer))
                    for a in (other.xaxis, other.yaxis)
                ]
        found += [(ax.get_title(), name) for name, other_box in others if box.overlaps(other_box)]
    return found


def _predictions(hardware: list[str], extrapolated_from: int) -> pd.DataFrame:
    """A predictions.csv grid: two models x three strategies x 1 ... 4,096 ranks on ``hardware``,
    every profile measured and extrapolated from ``extrapolated_from`` ranks on."""
    sizes = [2**k for k in range(13)]
    rows = [
        {
            "model": model,
            "hardware": hw,
            "strategy": strategy,
            "world_size": ws,
            "samples_per_s": 100.0 * ws**0.9 * (i + 1),
            "source": "measured",
            "extrapolated": ws >= extrapolated_from,
            "fits": True,
            "infeasible": "",
        }
        for hw in hardware
        for i, model in enumerate(("gpt-small", "mlp-8m"))
        for strategy in ("ddp", "dp-naive", "fsdp")
        for ws in sizes
    ]
    return pd.DataFrame(rows)


def _default_study_predictions() -> pd.DataFrame:
    """predictions.csv of the default study: cpu-local measured (calibrated at 2 ranks) and every
    profile whose specs allow it, from spec."""
    from benchbench.costmodel.validate import prediction_grid
    from benchbench.spec.config import load_config
    from tests.helpers.costmodel import measured_calibration

    grid, notes = prediction_grid(load_config(), {"cpu-local": measured_calibration()})
    assert not notes
    return grid


@pytest.mark.parametrize(
    "case",
    [
        "default study",
        "3 profiles, extrapolated from 1024 ranks",
        "4 profiles, extrapolated from 1024 ranks",
    ],
)
def test_predicted_panel_titles_do_not_run_into_each_other(case, monkeypatch):
    """The "Predicted scaling" figure's panel titles (hardware, sources, where extrapolation starts)
    are wrapped: no title's text box overlaps another title or another panel's axes. Drawn with the
    titles on one line (today's layout before the wrap), the default study's cpu-local title runs into
    the a100 one: the check sees it."""
    from benchbench.results.figures import costmodel
    from benchbench.results.figures.draw import titled, use_theme

    if case == "default study":
        grid = _default_study_predictions()
    else:
        n = int(case[0])
        grid = _predictions(["cpu-two-per-node", "cpu-rank-per-node", "a100-80gb-sxm", "h200-sxm"][:n], 1024)
    use_theme()
    fig = titled("predicted", costmodel._predicted(grid))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == grid["hardware"].nunique()
    assert "extrapolated" in " ".join(titles).replace("\n", " ")
    assert _panel_title_collisions(fig) == []
    plt.close(fig)
    wrapped = costmodel._predicted_title
    monkeypatch.setattr(costmodel, "_predicted_title", lambda hw, part: wrapped(hw, part).replace("\n", " "))
    fig = titled("predicted", costmodel._predicted(grid))
    collisions = _panel_title_collisions(fig)
    plt.close(fig)
    assert collisions, "one-line titles no longer collide: the check would not see the bug it was written for"
