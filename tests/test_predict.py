"""The cost model's predictions (benchbench/costmodel/predict.py): analytic communication equal to
what real runs measured, α-β arithmetic on hand-built calibrations, monotonic sanity, memory
exclusion, and a mutant of a formula that the arithmetic test catches."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from benchbench.costmodel import collectives
from benchbench.costmodel.calibration import Calibration, from_spec
from benchbench.costmodel.compute import oversubscription
from benchbench.costmodel.predict import comm_rows, predict_job
from benchbench.models.registry import model_info
from benchbench.spec.config import ROOT
from benchbench.spec.hardware import load_hardware
from benchbench.spec.job import Job
from benchbench.spec.plan import resolve_plan
from tests.helpers.costmodel import ALPHA, BW, GPT_SMALL, hand_cal
from tests.helpers.jobs import TINY_GPT, make_test_job, run

FIXTURE = ROOT / "tests" / "fixtures" / "comm_records.json"


def _records() -> list[dict]:
    return json.loads(FIXTURE.read_text())["records"]


def _measured_rows(comm: list[dict]) -> dict:
    """The record's rows by (kind, dim); a one-rank job's group is named ``world`` (the plans' ``dp``)."""
    return {
        (c["kind"], "dp" if c["dim"] == "world" else c["dim"]): (c["group_size"], c["calls"], c["payload_bytes"])
        for c in comm or []
    }


def _predicted_rows(job: Job) -> dict:
    return {
        (c["kind"], c["dim"]): (c["group_size"], c["calls"], c["payload_bytes"]) for c in comm_rows(job, hand_cal())
    }


def _powersgd_uncounted(rec: dict) -> bool:
    """PowerSGD at >= 2 ranks: its P and Q all-reduces are issued from future callbacks on gloo's
    threads, which the record's thread-local counting mode does not see (one rank's: 1 call)."""
    return rec["job"]["plan"]["compression"] == "powersgd" and rec["job"]["world_size"] > 1


@pytest.mark.parametrize("rec", _records(), ids=lambda r: f"{r['job']['strategy']}-ws{r['job']['world_size']}")
def test_analytic_communication_equals_the_measured_rows(rec):
    """Calls and payload of every (collective, mesh dimension) row equal the bytes real runs
    handed to their collectives (tests/fixtures/comm_records.json: real records of this machine)."""
    job = Job.from_dict(rec["job"])
    if _powersgd_uncounted(rec):
        from benchbench.costmodel.context import Ctx
        from benchbench.costmodel.data_parallel import powersgd_ops
        from benchbench.costmodel.tensors import ddp_buckets, stage_tensors

        (bucket,) = ddp_buckets(list(reversed(stage_tensors(job.model_cfg, 0, 1, 1))), job.plan.bucket_cap_mb)
        uncompressed = powersgd_ops(Ctx(job, hand_cal()), bucket)[0][0]
        measured = _measured_rows(rec["comm"])[("all_reduce", "dp")]
        assert measured == (job.world_size, 1, uncompressed.payload)  # only the uncompressed all-reduce is counted
        return
    assert _predicted_rows(job) == _measured_rows(rec["comm"])


def test_the_fixture_covers_every_family():
    strategies = {r["job"]["strategy"] for r in _records()}
    assert {
        "ddp",
        "dp-naive",
        "zero1",
        "fsdp",
        "fsdp-no-reshard",
        "tp",
        "tp-sp",
        "pp-1f1b",
        "pp-interleaved",
        "pp-zbv",
        "ddp-pp",
        "fsdp-tp",
        "3d",
        "ddp-fp16",
        "ddp-powersgd",
        "ddp-accum",
        "hsdp",
    } <= strategies


@pytest.mark.slow
def test_analytic_communication_equals_a_live_run(tiny_config, tmp_path):
    """A job run now (tiny gpt, DDP on 2 ranks, buckets of 0.01 MiB: several buckets): its record's
    rows equal the analytic ones."""
    plan = replace(resolve_plan("ddp", 2), bucket_cap_mb=0.01)
    record = run(tiny_config, tmp_path, "gpt-tiny", "ddp", 2, plan=plan)
    assert record["status"] == "ok", record["error"]
    job = Job.from_dict(record["job"])
    assert _measured_rows(record["comm"])[("all_reduce", "dp")][1] > 2
    assert _predicted_rows(job) == _measured_rows(record["comm"])


@pytest.mark.slow
def test_powersgd_callbacks_are_counted_in_a_live_run(tiny_config, tmp_path):
    """PowerSGD issues its P and Q all-reduces from future callbacks on gloo's threads, outside the
    counting mode's thread (records before the fix showed 1 call, its uncompressed all-reduce
    only): a run now counts them, and its rows equal the analytic ones."""
    record = run(dict(tiny_config, warmup_steps=3), tmp_path, "gpt-tiny", "ddp-powersgd", 2)
    assert record["status"] == "ok", record["error"]
    measured = _measured_rows(record["comm"])
    assert measured[("all_reduce", "dp")][1] >= 3  # uncompressed tensors, P, Q
    assert _predicted_rows(Job.from_dict(record["job"])) == measured


def _gpt_small_job(strategy: str, ws: int, **changes) -> Job:
    job = make_test_job(strategy, ws, model="gpt-small", model_cfg=dict(GPT_SMALL), seq_len=32, warmup_steps=3)
    return job.replace(**changes)


def test_alpha_beta_arithmetic_of_ddp_and_naive():
    """DDP, gpt-small (one bucket: 13.2 MB < 25 MiB), 4 ranks, overlap 0: all-reduce =
    α·2⌈log₂4⌉ + S·2(n−1)/n / B, wholly exposed; step = F + B + optimizer + that. Naive: one such
    all-reduce per parameter tensor (69)."""
    cal = hand_cal()
    size = model_info(GPT_SMALL).params * 4
    allreduce = ALPHA * 4 + size * 1.5 / BW
    p = predict_job(_gpt_small_job("ddp", 4), cal)  # local batch 2: F 6 ms, B 11 ms, extrapolated
    assert p.comm_s == pytest.approx(allreduce) and p.exposed_comm_s == pytest.approx(allreduce)
    assert p.step_time_s == pytest.approx(0.006 + 0.011 + 0.005 + allreduce)
    assert p.extrapolated and p.samples_per_s == pytest.approx(8 / p.step_time_s)
    naive = predict_job(_gpt_small_job("dp-naive", 4), cal)
    assert naive.comm_s == pytest.approx(69 * ALPHA * 4 + size * 1.5 / BW)


def test_a_formula_without_its_bus_factor_fails_the_arithmetic_test(monkeypatch):
    """Mutant: all-reduce's 2(n−1)/n dropped; the arithmetic test above must catch it."""
    monkeypatch.setitem(collectives.BUS_FACTOR, "all_reduce", lambda n: 1.0)
    with pytest.raises(AssertionError):
        test_alpha_beta_arithmetic_of_ddp_and_naive()


def test_overlap_hides_all_but_the_last_bucket_and_no_more_than_backward():
    """DDP with 0.5 MiB buckets: with overlap 1 only the last bucket (and what backward cannot
    cover) is exposed; with overlap 0 everything."""
    job = _gpt_small_job("ddp", 2, plan=replace(resolve_plan("ddp", 2), bucket_cap_mb=0.5))
    none, full = predict_job(job, hand_cal(overlap=0.0)), predict_job(job, hand_cal(overlap=1.0))
    assert none.exposed_comm_s == pytest.approx(none.comm_s)
    assert full.exposed_comm_s < none.exposed_comm_s
    assert full.exposed_comm_s >= full.comm_s - 0.021 - 1e-9  # hidden <= backward (1 + 20·4/4 ms)


def test_more_bandwidth_is_never_slower():
    for strategy, ws in (
        ("ddp", 2),
        ("dp-naive", 4),
        ("zero1", 2),
        ("fsdp", 4),
        ("tp", 2),
        ("tp-sp", 4),
        ("pp-1f1b", 4),
        ("fsdp-tp", 4),
        ("3d", 8),
        ("ddp-powersgd", 2),
    ):
        job = _gpt_small_job(strategy, ws)
        slow, fast = predict_job(job, hand_cal(bw=1e8)), predict_job(job, hand_cal(bw=1e10))
        assert fast.step_time_s <= slow.step_time_s, strategy
        assert fast.comm_s < slow.comm_s, strategy


def test_the_bubble_falls_with_micro_batches():
    """Compute-bound (transfers cheap beside the stages' compute): more micro-batches, less bubble.
    (Where transfers dominate — gpt-small on H100s, micro-batches of 2 samples — the model says the
    opposite: each extra micro-batch adds a latency-bound hop and almost no compute.)"""
    cal = hand_cal(alpha=1e-6, bw=1e11)
    for strategy in ("pp-1f1b", "pp-gpipe", "pp-interleaved"):
        bubbles = []
        for m in (4, 8, 16, 32):
            plan = replace(resolve_plan(strategy, 2), micro_batches=m)
            job = _gpt_small_job(strategy, 2, plan=plan, global_batch=128)
            bubbles.append(predict_job(job, cal).bubble_fraction)
        assert bubbles == sorted(bubbles, reverse=True) and bubbles[-1] < bubbles[0], (strategy, bubbles)


def test_equal_stages_without_transfers_give_the_closed_form():
    """Free communication, a model of identical blocks: 1F1B's predicted bubble is near (p−1)/(m+p−1)
    (the stages differ only by the head's FLOPs)."""
    cal = hand_cal(alpha=0.0, bw=1e30)
    cfg = {"arch": "gpt", "layers": 8, "hidden": 512, "heads": 8, "seq_len": 16, "vocab": 16}
    plan = replace(resolve_plan("pp-1f1b", 4), micro_batches=8)
    job = _gpt_small_job("pp-1f1b", 4, model_cfg=cfg, seq_len=16, plan=plan, global_batch=32)
    assert predict_job(job, cal).bubble_fraction == pytest.approx(3 / 11, abs=0.02)


def test_oversubscribed_cpus_slow_by_ranks_over_cores():
    job = _gpt_small_job("ddp", 4)
    assert oversubscription(job, hand_cal(cpu_count=2)) == 2.0 and oversubscription(job, hand_cal()) == 1.0
    slow, free = predict_job(job, hand_cal(cpu_count=2)), predict_job(job, hand_cal())
    assert slow.step_time_s == pytest.approx(2 * free.step_time_s)


def test_a_large_gpt_is_excluded_by_memory_on_few_gpus():
    """A Llama-2-7B-sized gpt (32 layers, hidden 4096: 6.7 B parameters, 16 bytes each = 108 GB)
    does not fit one 80 GB H100 under DDP; FSDP over 64 GPUs does."""
    big = {"arch": "gpt", "layers": 32, "hidden": 4096, "heads": 32, "seq_len": 2048, "vocab": 32000}
    h100 = load_hardware("h100-sxm")
    cal = from_spec("h100-sxm", h100)
    ddp = predict_job(make_test_job("ddp", 8, model_cfg=big, seq_len=2048, hardware_cfg=h100, dtype="bf16"), cal)
    assert ddp.fits is False and ddp.infeasible.startswith("memory:") and "> 80 GB" in ddp.infeasible
    assert ddp.memory_limit_bytes == 80e9 and ddp.memory_bytes > 100e9
    job = make_test_job("fsdp", 64, model_cfg=big, seq_len=2048, hardware_cfg=h100, dtype="bf16", global_batch=64)
    fsdp = predict_job(job, cal)
    assert fsdp.fits is True and fsdp.infeasible is None and fsdp.source == "from spec"


def test_plan_rules_refuse_before_any_figure():
    p = predict_job(make_test_job("single", 2), hand_cal())
    assert p.infeasible.startswith("single-process plan") and math.isnan(p.step_time_s) and p.fits is None


def test_a_spec_calibration_without_rates_names_what_is_missing():
    cal = Calibration("cpu-local", "from spec", collectives=hand_cal().collectives)
    with pytest.raises(ValueError, match=r"compute_rates\[fp32\]"):
        predict_job(make_test_job("ddp", 2, model="unmeasured", model_cfg=dict(TINY_GPT)), cal)


def test_the_fixture_is_real_measurement():
    """The records were written by benchbench runs (provenance kept), not made up."""
    data = json.loads(Path(FIXTURE).read_text())
    assert "real records" in data["source"] and all(len(r["git_commit"]) == 40 for r in data["records"])


def test_prediction_error_figures_are_computed_from_the_records(tmp_path, capsys):
    """benchmarks/prediction_error.py: each error is (predicted − measured) / measured of the
    record it reads; a record measured twice as slow shows a different error."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("prediction_error", ROOT / "benchmarks" / "prediction_error.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cal_path = tmp_path / "cal.json"
    from benchbench.costmodel.calibration import write_calibration

    write_calibration(hand_cal(), cal_path)
    recs = [r for r in _records() if r["job"]["strategy"] in ("ddp", "fsdp") and r["job"]["world_size"] == 2]
    for i, r in enumerate(recs):
        summary = {"step_time_median_s": 0.05 * (i + 1), "model_state_bytes": 1e6 * (i + 1)}
        body = {"status": "ok", "job": r["job"], "env": {"oversubscribed": False}, "summary": summary}
        path = tmp_path / "res" / "raw" / f"{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body))
    rows = mod.rows([tmp_path / "res"], cal_path)
    assert len(rows) == len(recs) >= 2
    for i, (row, r) in enumerate(zip(rows, recs, strict=True)):
        pred = predict_job(Job.from_dict(r["job"]), hand_cal())
        assert row["step_err"] == pytest.approx((pred.step_time_s - 0.05 * (i + 1)) / (0.05 * (i + 1)))
        assert row["mem_err"] == pytest.approx((pred.model_state_bytes - 1e6 * (i + 1)) / (1e6 * (i + 1)))
    assert mod.main([str(tmp_path / "res"), "--calibration", str(cal_path)]) == 0
    assert f"overall n={len(recs)}: step time median" in capsys.readouterr().out


def test_groups_wider_than_a_node_use_the_inter_node_link():
    """Mesh (dp, pp, tp), tp innermost: on 8-GPU nodes at 32 ranks with tp 4 and pp 4, tp groups
    (4 consecutive ranks) stay in a node, pp groups (tp·pp = 16 ranks) and dp groups span nodes;
    the inter-node fit (50 GB/s against NVLink's 450) makes the dp all-gathers slower."""
    from benchbench.costmodel.context import Ctx

    h100 = load_hardware("h100-sxm")
    plan = replace(resolve_plan("3d", 32), tp=4, pp=4, dp=2, micro_batches=4)
    job = _gpt_small_job("3d", 32, plan=plan, hardware_cfg=h100, global_batch=64)
    ctx = Ctx(job, from_spec("h100-sxm", h100))
    assert (ctx.level("tp"), ctx.level("pp"), ctx.level("dp")) == ("intra", "inter", "inter")
    small = replace(plan, tp=2, pp=2, dp=2)
    ctx = Ctx(_gpt_small_job("3d", 8, plan=small, hardware_cfg=h100, global_batch=64), from_spec("h100-sxm", h100))
    assert (ctx.level("tp"), ctx.level("pp"), ctx.level("dp")) == ("intra", "intra", "intra")
    # all-gather of 1 GB over 2 ranks: α + S·(n−1)/n / B
    assert ctx.time("all_gather", "dp", 2, 1e9) == pytest.approx(2e-6 + 0.5e9 / 450e9)
    assert Ctx(job, ctx.cal).time("all_gather", "dp", 2, 1e9) == pytest.approx(5e-6 + 0.5e9 / 50e9)


def test_the_gpu_only_plans_are_predicted_from_spec(monkeypatch):
    """float8: the blocks' matmuls at the profile's fp8 peak (faster than bf16 at large shapes, never
    2x: the head, attention and torchao's casts stay; slower at small shapes, where the casts cost
    more than the matmuls save); async TP: the TP collectives hidden behind compute; context
    parallel: FSDP over dp x cp plus the ring's KV all-gathers and reduce-scatters on cp."""
    from benchbench.spec import gpu_features

    monkeypatch.setattr(gpu_features, "torchao_available", lambda: True)
    model = {"arch": "gpt", "layers": 8, "hidden": 1024, "heads": 16, "seq_len": 1024, "vocab": 32000}
    h100 = load_hardware("h100-sxm")
    cal = from_spec("h100-sxm", h100)

    def pred(strategy, ws=4, c=cal, m=model):
        job = make_test_job(
            strategy, ws, model_cfg=m, seq_len=m["seq_len"], hardware_cfg=h100, dtype="bf16", global_batch=16
        )
        return predict_job(job, c)

    big = {"arch": "gpt", "layers": 4, "hidden": 8192, "heads": 64, "seq_len": 4096, "vocab": 32000}
    fsdp, f8 = pred("fsdp", m=big), pred("fsdp-float8", m=big)
    assert f8.infeasible is None and 0.5 < f8.compute_s / fsdp.compute_s < 0.95
    assert "float8: block matmuls" in f8.terms
    # small matmuls: torchao's casts (memory-bound) cost more than the fp8 matmuls save
    assert pred("fsdp-float8").compute_s > pred("fsdp").compute_s
    no_fp8 = replace(cal, peak_flops={k: v for k, v in cal.peak_flops.items() if k != "fp8"})
    assert pred("fsdp-float8", c=no_fp8, m=big).compute_s == pytest.approx(fsdp.compute_s)
    fsdp = pred("fsdp")
    sp, asy = pred("tp-sp"), pred("tp-async")
    assert asy.comm_s == pytest.approx(sp.comm_s) and asy.exposed_comm_s < 0.5 * sp.exposed_comm_s
    cp = pred("cp")
    assert cp.infeasible is None and "cp ring attention" in cp.terms
    assert cp.comm_s > fsdp.comm_s and cp.step_time_s > fsdp.step_time_s  # fsdp over the same 4 ranks + the ring


def test_hsdp_shards_within_a_node_and_replicates_across():
    """HSDP on 8-GPU nodes at 16 ranks, shard groups of 8: all-gathers and reduce-scatters on the
    intra-node link, the replicas' all-reduce on the inter-node one; FSDP over all 16 ranks is all
    inter-node, so HSDP's communication is faster, and it holds twice FSDP's model state."""
    from benchbench.costmodel.context import Ctx

    h100 = load_hardware("h100-sxm")
    plan = replace(resolve_plan("hsdp", 16), dp_shard=8)
    hsdp = _gpt_small_job("hsdp", 16, plan=plan, hardware_cfg=h100, global_batch=64)
    ctx = Ctx(hsdp, from_spec("h100-sxm", h100))
    assert (ctx.level("dp_shard"), ctx.level("dp_replicate"), ctx.level("dp")) == ("intra", "inter", "inter")
    fsdp = _gpt_small_job("fsdp", 16, hardware_cfg=h100, global_batch=64)
    ph, pf = predict_job(hsdp, ctx.cal), predict_job(fsdp, ctx.cal)
    assert ph.comm_s < pf.comm_s and ph.model_state_bytes == pytest.approx(2 * pf.model_state_bytes)
    rows = {(r["kind"], r["dim"]): r for r in comm_rows(hsdp, ctx.cal)}
    assert rows["all_reduce", "dp_replicate"]["group_size"] == 2 and rows["all_gather", "dp_shard"]["group_size"] == 8


def test_checkpointing_adds_a_recompute_and_saves_activations():
    """Full checkpointing of gpt-small under DDP at 2 ranks (hand calibration: F 10 ms, B 20 ms at
    4 samples, + 1 ms each): the step grows by F × the recomputed share of the forward (every block
    but its fc2, torch's early stop), the predicted activations fall to each block's input; selective
    (every 2nd block) lies in between."""
    from benchbench.costmodel.tensors import gpt_layer_flops

    cal = hand_cal()
    none, full, sel = (
        predict_job(_gpt_small_job("ddp-ac", 2, plan=replace(resolve_plan("ddp-ac", 2), activation_checkpoint=m)), cal)
        for m in ("none", "full", "selective")
    )
    block, head = gpt_layer_flops(GPT_SMALL)
    h, t, layers = GPT_SMALL["hidden"], GPT_SMALL["seq_len"], GPT_SMALL["layers"]
    share = layers * (block - 8 * t * h * h) / (layers * block + head)
    assert full.step_time_s - none.step_time_s == pytest.approx(0.011 * share)  # F at 4 samples: 1 + 10 ms
    assert none.step_time_s < sel.step_time_s < full.step_time_s
    assert none.activation_bytes > sel.activation_bytes > full.activation_bytes


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_fsdp_under_a_pipeline_gathers_once_per_step(tiny_config, tmp_path, dtype):
    """FSDP2 × a 1F1B pipeline (dp 2 × pp 2, 4 micro-batches, tiny gpt, 4 ranks): the plan keeps
    each unit's parameters gathered across the micro-batches (torchtitan's default policy under
    pp, ``Plan.fsdp_reshards_after_forward``), so the record counts one all-gather per unit and
    step — 2 units a stage (a block, the root), not m + 1 = 5 each as with resharding — and the
    analytic rows (sends, gathers, reduce-scatters, their bytes) equal the measured ones."""
    defs = {"fsdp-pp": {"base": "fsdp", "pp": 2, "micro_batches": 4}}
    plan = resolve_plan("fsdp-pp", 4, defs)
    assert plan.reshard_after_forward and not plan.fsdp_reshards_after_forward
    record = run(dict(tiny_config, strategy_defs=defs), tmp_path, "gpt-tiny", "fsdp-pp", 4, dtype=dtype)
    assert record["status"] == "ok", record["error"]
    measured = _measured_rows(record["comm"])
    assert measured[("all_gather", "dp")][1] == 2  # root + one block on each stage, once per step
    assert measured[("reduce_scatter", "dp")][1] == 2
    assert _predicted_rows(Job.from_dict(record["job"])) == measured
