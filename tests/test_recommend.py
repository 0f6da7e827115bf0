"""Recommending a plan (benchbench/costmodel/recommend.py, ``benchbench recommend``), the generated
plan space (space.py), ``benchbench predict`` and ``strategies: [predicted-top-K]`` in a study."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import pytest
import yaml

from benchbench.cli.main import main
from benchbench.costmodel.calibration import write_calibration
from benchbench.costmodel.plan_space import candidates, generated_plans
from benchbench.costmodel.recommend import calibration_for, format_recommendation, recommend, study_global_batch
from benchbench.spec.config import SAFE_NAME, ConfigError, check_config, load_config
from benchbench.spec.hardware import load_hardware
from benchbench.spec.job import job_infeasible_reason, make_job
from benchbench.spec.plan import infeasible_reason, resolve_plan, strategy_fields
from benchbench.spec.schema import ROOT
from benchbench.study import expand
from tests.helpers.costmodel import GPT_SMALL, hand_cal

BIG = {"arch": "gpt", "layers": 32, "hidden": 4096, "heads": 32, "seq_len": 2048, "vocab": 32000}


@pytest.mark.parametrize("ws", [8, 64, 1024])
def test_recommend_answers_for_gpt_small_on_h100(ws, capsys):
    assert main(["recommend", "--model", "gpt-small", "--hardware", "h100-sxm", "--world-size", str(ws)]) == 0
    out = capsys.readouterr().out
    assert f"gpt-small on h100-sxm at {ws} ranks, global batch {8 * ws} (calibration: from spec)" in out
    best = re.search(r"^best: (\S+) \(predicted\) ([0-9.e+]+) samples/s", out, re.M)
    assert best and float(best.group(2)) > 0
    assert re.search(r"^runner-up: \S+ \(predicted\) .* margin -?[0-9.]+%$", out, re.M)
    assert "excluded by memory" in out
    assert "mixes measured" not in out  # nothing measured: nothing mixed
    snippet = yaml.safe_load(out.split("strategy for a study (paste into its config):\n")[1])
    assert snippet["strategies"] == [best.group(1)]
    cfg = load_config()
    cfg = check_config(
        {
            **cfg,
            "strategies": snippet["strategies"],
            "strategy_defs": snippet.get("strategy_defs", {}),
            "world_sizes": [ws],
        }
    )
    job = make_job(cfg, "gpt-small", "h100-sxm", best.group(1), ws, 0)[0].replace(global_batch=8 * ws)
    assert job_infeasible_reason(job) is None and job.world_size == ws


def test_memory_excludes_a_large_gpt_on_few_gpus():
    cfg = load_config()
    cfg["models"]["big"] = dict(BIG, batch_size=1)
    rec = recommend(cfg, "big", "h100-sxm", 8, calibration_for("default", "h100-sxm"))
    assert {p.strategy for p in rec.excluded} >= {"ddp", "dp-naive"}  # 16 bytes x 6.7 B parameters
    assert all(p.memory_bytes > 80e9 for p in rec.excluded)
    assert all(c.prediction.memory_bytes <= 80e9 for c in rec.ranked)
    text = format_recommendation(rec)
    assert re.search(r"^  ddp: [0-9.]+ GB predicted > 80 GB limit$", text, re.M)


def test_a_measured_record_outranks_by_its_measured_throughput(tmp_path, capsys):
    """Where an ok record of the configuration exists, its throughput is used and labelled: at a
    world size the study runs, recommend ranks the plans at the study's global batch (8 here, not
    8 x 2), so the study's own record matches without --global-batch."""
    cal_path = tmp_path / "cal.json"
    write_calibration(hand_cal(), cal_path)
    cfg = load_config()
    job, _ = make_job(cfg, "gpt-small", "cpu-local", "ddp", 2, 0)
    assert job.global_batch == 8
    rec_path = tmp_path / "res" / "raw" / "gpt-small" / "cpu-local" / "ddp" / "ws2-r0.json"
    rec_path.parent.mkdir(parents=True)
    rec_path.write_text(json.dumps({"status": "ok", "job": job.to_dict(), "summary": {"samples_per_s": 1e9}}))
    (rec_path.parent / "ws2-r1.json").write_text('{"status": "ok", "job": {')  # a torn record: not a measurement
    args = [
        "recommend",
        "--model",
        "gpt-small",
        "--hardware",
        "cpu-local",
        "--world-size",
        "2",
        "--calibration",
        str(cal_path),
        "--results",
        str(tmp_path / "res"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"^best: ddp \(measured\) 1e\+09 samples/s", out, re.M)
    assert "(predicted)" in out.split("runner-up:")[1]
    assert "mixes measured and predicted throughput" in out  # said where the mixed ranking is shown
    assert re.search(r"pred\. ms .* samples/s .* pred\. GB  samples/s source$", out, re.M)  # which is which


@pytest.mark.parametrize(
    "bad",
    [
        ["--world-size", "0"],
        ["--world-size", "8", "--top", "0"],
        ["--world-size", "8", "--top", "-1"],
        ["--world-size", "8", "--global-batch", "0"],
    ],
)
def test_recommend_refuses_counts_below_one(bad, capsys):
    assert main(["recommend", "--model", "gpt-small", "--hardware", "h100-sxm", *bad]) == 2
    assert "allowed: integers >= 1" in capsys.readouterr().err


def test_recommend_over_a_failed_calibration_uses_the_specs_and_says_so(tmp_path, monkeypatch, capsys):
    from benchbench.costmodel.calibration import write_failed_calibration

    monkeypatch.chdir(tmp_path)
    write_failed_calibration(tmp_path / "results" / "default" / "calibration" / "h100-sxm.json", "h100-sxm", "died")
    assert main(["recommend", "--model", "gpt-small", "--hardware", "h100-sxm", "--world-size", "8"]) == 0
    out, err = capsys.readouterr()
    assert "(calibration: from spec)" in out
    assert "the calibration failed: died; predicting h100-sxm from its specs" in err
    write_failed_calibration(tmp_path / "results" / "default" / "calibration" / "cpu-local.json", "cpu-local", "died")
    assert main(["recommend", "--model", "gpt-small", "--hardware", "cpu-local", "--world-size", "2"]) == 2
    assert "bandwidth_gbps/latency_us" in capsys.readouterr().err  # no specs to stand in: the error says so


def test_cpu_local_without_a_calibration_names_the_missing_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["recommend", "--model", "gpt-small", "--hardware", "cpu-local", "--world-size", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "bandwidth_gbps/latency_us" in err and "benchbench calibrate" in err


def test_generated_plans_are_safe_feasible_and_pasteable():
    h100 = load_hardware("h100-sxm")
    for ws in (8, 64, 1024):
        defs = generated_plans(GPT_SMALL, h100, ws)
        assert defs and all(SAFE_NAME.fullmatch(n) for n in defs)
        for name in defs:
            plan = resolve_plan(name, ws, defs)
            assert plan.tp <= 4 and plan.tp * plan.pp * plan.dp == ws, name
            assert infeasible_reason(plan, GPT_SMALL, ws, 8 * ws) is None, name
    assert "fsdp.tp4.pp2.1f1b.m2" in generated_plans(GPT_SMALL, h100, 64)
    found = candidates(GPT_SMALL, h100, 8, 64)
    assert "ddp-pp" in found and "ddp.pp2.1f1b.m4" not in found  # the same plan, under the preset's name


def test_predict_cli_writes_every_prediction_column(tmp_path, capsys):
    out = tmp_path / "p.csv"
    args = ["predict", "--hardware", "h100-sxm", "a100-80gb-sxm", "--world-sizes", "1,2,64,4096", "--csv", str(out)]
    assert main(args) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("model,hardware,strategy,world_size,dp,tp,pp,global_batch,source,extrapolated")
    assert len(lines) == 1 + 2 * 2 * 3 * 4  # models x hardware x strategies x world sizes
    assert "single-process plan needs world_size 1" in out.read_text()
    assert "gpt-small\th100-sxm\tddp\t4096\t4096\t1\t1\t32768\t" in capsys.readouterr().out


def test_predict_of_a_study_with_only_predicted_top_k_says_what_to_ask(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = {**load_config(), "study": "top", "strategies": ["predicted-top-2"]}
    (tmp_path / "top.yaml").write_text(yaml.safe_dump(cfg))
    args = ["predict", "--configfile", "top.yaml", "--hardware", "h100-sxm", "--csv", str(tmp_path / "p.csv")]
    assert main(args) == 2
    assert "name no plan to predict" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()
    assert main([*args, "--plans", "all"]) == 0 and len((tmp_path / "p.csv").read_text().splitlines()) > 10


def _top_study(tmp_path, monkeypatch, k: int = 2) -> dict:
    monkeypatch.chdir(tmp_path)
    cfg = copy.deepcopy(load_config())
    cfg.update(study="top", strategies=["single", f"predicted-top-{k}"], world_sizes=[1, 2, 4])
    cfg["models"] = {"gpt-small": cfg["models"]["gpt-small"]}
    return check_config(cfg)


def test_predicted_top_k_expands_into_the_best_predicted_plans(tmp_path, monkeypatch):
    cfg = _top_study(tmp_path, monkeypatch)
    write_calibration(hand_cal(), tmp_path / "results" / "top" / "calibration" / "cpu-local.json")
    jobs, _ = expand(cfg)
    for ws in (2, 4):
        mine = [j.strategy for j in jobs if j.world_size == ws and j.repeat == 0]
        best = recommend(cfg, "gpt-small", "cpu-local", ws, hand_cal(), 8).ranked
        assert mine == [c.name for c in best[:2]] and len(mine) == 2
    assert all(
        j.plan.to_dict()
        == resolve_plan(
            j.strategy, j.world_size, generated_plans(GPT_SMALL, load_hardware("cpu-local"), j.world_size)
        ).to_dict()
        for j in jobs
        if "." in j.strategy
    )


def test_predicted_top_k_over_a_failed_calibration_falls_back_to_the_specs(tmp_path, monkeypatch):
    from benchbench.costmodel.calibration import write_failed_calibration

    cfg = check_config({**_top_study(tmp_path, monkeypatch), "hardware": ["h100-sxm"]})
    write_failed_calibration(tmp_path / "results" / "top" / "calibration" / "h100-sxm.json", "h100-sxm", "ranks died")
    jobs, _ = expand(cfg)
    assert {j.world_size for j in jobs if j.strategy != "single"} == {1, 2, 4}
    assert {j.hardware for j in jobs} == {"h100-sxm"}


def test_predicted_top_k_without_a_calibration_says_what_to_run(tmp_path, monkeypatch):
    cfg = _top_study(tmp_path, monkeypatch, 3)
    with pytest.raises(ConfigError) as e:
        expand(cfg)
    msg = str(e.value)
    assert "strategies.1: 'predicted-top-3'" in msg and "benchbench calibrate --configfile" in msg
    assert "--hardware cpu-local" in msg


def test_the_schema_accepts_predicted_top_k_only_with_k_at_least_1():
    cfg = load_config()
    assert check_config({**cfg, "strategies": ["predicted-top-12"]})["strategies"] == ["predicted-top-12"]
    with pytest.raises(ConfigError, match="predicted-top-0"):
        check_config({**cfg, "strategies": ["predicted-top-0"]})


def test_predict_and_recommend_for_llama3_8b_import_no_torch(tmp_path):
    """The cost model's commands on Llama 3 8B (llama3-h100 study, H100 nodes) count the model from
    its formulas: neither `benchbench predict` nor `benchbench recommend` imports torch (a fresh
    interpreter, the commands run in it, then torch is looked for in sys.modules)."""
    study = str(ROOT / "config" / "studies" / "llama3-h100.yaml")
    code = (
        "import sys\n"
        "from benchbench.cli.main import main\n"
        f"assert main(['predict', '--configfile', {study!r}, '--world-sizes', '8,64']) == 0\n"
        f"assert main(['recommend', '--configfile', {study!r}, '--model', 'llama3-8b',"
        f" '--hardware', 'h100-sxm', '--world-size', '64', '--results-root', {str(tmp_path)!r}]) == 0\n"
        "print('torch loaded:', 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fsdp" in proc.stdout  # the commands answered
    assert proc.stdout.strip().endswith("torch loaded: False")


def _compresses(name: str, spec: dict | None) -> bool:
    """Read from the plan's own fields (not from ``lossy_kinds``, the function under test): whether
    the plan compresses gradients or runs float8 matmuls."""
    fields = strategy_fields(name, {name: spec} if spec else {})
    return fields.get("compression", "none") != "none" or bool(fields.get("float8"))


def test_the_default_study_recommends_exact_plans_only():
    """The default study's recommendations (the report's table: every profile, 2 to 1,024 ranks;
    cpu-local with a hand calibration) hold no lossy plan by default — where lossy plans would win
    when allowed (ddp-powersgd, ddp-fp16: below), so the check has something to refuse. Treating
    PowerSGD as exact in ``lossy_kinds`` makes it fail."""
    from benchbench.costmodel.validate import grid_calibrations, recommendations

    cfg, cals = load_config(), {"cpu-local": hand_cal()}
    assert cfg["allow_lossy"] is False  # the schema's default
    every = {**cals, **{h: calibration_for("default", h) for h in ("a100-80gb-sxm", "h100-sxm", "h200-sxm")}}
    for hardware, cal in every.items():
        for model in cfg["models"]:
            for ws in (2, 8, 64, 1024):
                rec = recommend(cfg, model, hardware, ws, cal, study_global_batch(cfg, model, hardware, ws))
                assert rec.ranked and not rec.allow_lossy
                assert not [c.name for c in rec.ranked if _compresses(c.name, c.spec)], (model, hardware, ws)
                assert {p.strategy for p in rec.left_out_lossy} == {"ddp-fp16", "ddp-bf16", "ddp-powersgd"}
    table, notes = recommendations(cfg, cals)
    # every profile the grid can predict (the study's calibrated, the rest from spec) x 2 models x 4 sizes
    assert not notes and len(table) == len(grid_calibrations(cfg["hardware"], cals)) * 2 * 4
    assert not table["best_plan"].str.contains("lossy|powersgd|fp16|bf16|float8").any()
    assert not table["runner_up_plan"].str.contains("lossy|powersgd|fp16|bf16|float8").any()
    assert (table["lossy_left_out"] == 3).all()
    allowed, _ = recommendations({**cfg, "allow_lossy": True}, cals)  # the study key
    best = allowed["best_plan"]
    assert best.str.startswith("ddp-powersgd (").any() and best.str.startswith("ddp-fp16 (").any()
    lossy = best[best.str.contains("powersgd|fp16|bf16")]
    assert lossy.str.contains(r" \[lossy \((?:powersgd|fp16|bf16)\): gate error <= [0-9.]+ \(the gate's bound").all()
    assert (allowed["lossy_left_out"] == 0).all()


def test_allow_lossy_ranks_lossy_plans_labelled_with_their_measured_or_bounded_error(tmp_path, capsys):
    """``--allow-lossy``: lossy plans are ranked and each is labelled wherever it is named, with the
    gate's error from this configuration's record (the largest of the bounded errors of a record
    whose verdict is lossy) or else the gate's bound (LOSSY_BOUNDS); without it they are left out
    and named."""
    cal_path = tmp_path / "cal.json"
    write_calibration(hand_cal(), cal_path)
    cfg = load_config()
    job, _ = make_job(cfg, "gpt-small", "cpu-local", "ddp-powersgd", 2, 0)
    rec_path = tmp_path / "res" / "raw" / "gpt-small" / "cpu-local" / "ddp-powersgd" / "ws2-r0.json"
    rec_path.parent.mkdir(parents=True)
    gate = {"verify_verdict": "lossy", "verify_loss_rel_err": 0.01, "verify_grad_rel_err": 0.58}
    rec_path.write_text(json.dumps({"status": "ok", "job": job.to_dict(), "summary": {"samples_per_s": 1e9, **gate}}))
    args = ["recommend", "--model", "gpt-small", "--hardware", "cpu-local", "--world-size", "2"]
    args += ["--calibration", str(cal_path), "--results", str(tmp_path / "res")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ddp-powersgd" not in out.split("best:")[0]  # not ranked
    assert re.search(r"exact plans fit, .*, 3 lossy left out$", out.splitlines()[0])
    assert "3 lossy plans that fit left out (ddp-fp16, ddp-bf16, ddp-powersgd); --allow-lossy" in out
    assert main([*args, "--allow-lossy"]) == 0
    out = capsys.readouterr().out
    assert "lossy left out" not in out.splitlines()[0]
    expected = "ddp-powersgd (measured; lossy (powersgd): gate error 0.58 measured (bound 2)) 1e+09 samples/s"
    assert f"best: {expected}" in out
    rows = {line.split()[1]: line for line in out.splitlines() if re.match(r"^ +[0-9]+  ", line)}
    assert rows["ddp-powersgd"].endswith("measured; lossy (powersgd): gate error 0.58 measured (bound 2)")
    assert rows["ddp-fp16"].endswith("lossy (fp16): gate error <= 0.01 (the gate's bound; not measured)")
    assert not [n for n, line in rows.items() if ("lossy" in line) != (n in ("ddp-fp16", "ddp-bf16", "ddp-powersgd"))]
    assert "lossy plans ranked (allow_lossy)" in out


def test_predicted_top_k_takes_lossy_plans_only_when_the_study_allows_them(tmp_path, monkeypatch):
    """``allow_lossy`` in a study: mlp-8m on H100s at 64 ranks, where PowerSGD is predicted fastest."""
    monkeypatch.chdir(tmp_path)
    cfg = copy.deepcopy(load_config())
    cfg.update(study="top", hardware=["h100-sxm"], strategies=["predicted-top-1"], world_sizes=[64], repeats=1)
    cfg["models"] = {"mlp-8m": cfg["models"]["mlp-8m"]}
    exact = [j.strategy for j in expand(check_config(cfg))[0]]
    lossy = [j for j in expand(check_config({**cfg, "allow_lossy": True}))[0]]
    assert len(exact) == 1 and not resolve_plan(exact[0], 64).lossy
    assert [j.strategy for j in lossy] == ["ddp-powersgd"] and lossy[0].plan.lossy


def test_lossy_is_decided_in_one_place_with_the_gates_bounds():
    """``lossy_kinds`` reads a Plan and a record's plan dict alike; ``Plan.lossy``, the runs table's
    ``lossy`` and ``correct`` and the gate's bound follow it (float8 included: the tables read only
    the compression before)."""
    from benchbench.results.tables import runs_table, scaling_table
    from benchbench.spec.plan import LOSSY_BOUNDS, Plan, lossy_bound, lossy_kinds
    from tests.helpers.records import rec

    both = Plan(compression="fp16", float8=True)
    assert lossy_kinds(both) == ("fp16", "float8") and lossy_bound(both) == LOSSY_BOUNDS["float8"]
    for name in ("ddp", "fsdp", "ddp-fp16", "ddp-powersgd", "fsdp-float8"):
        plan = resolve_plan(name, 2)
        assert lossy_kinds(plan) == lossy_kinds(plan.to_dict())
        assert plan.lossy == _compresses(name, None) == (lossy_bound(plan) is not None)
    assert lossy_bound(resolve_plan("ddp-powersgd", 2)).rel == 2.0 and lossy_bound(resolve_plan("ddp", 2)) is None
    records = [rec("single", 1, 1.0), rec("ddp", 2, 0.5)]
    records[1]["job"]["plan"]["float8"] = True  # an fsdp-float8-like record: its loss may leave single's
    records[1]["loss"] = [2.5, 1.5]
    runs = runs_table(records).set_index("world_size")
    assert runs.loc[2, "correct"] == "lossy" and runs.loc[1, "correct"] == "match"
    assert scaling_table(records).set_index("world_size").loc[2, "lossy"]
