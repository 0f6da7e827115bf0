"""Strategy presets, plan resolution, feasibility rules and theoretical bubbles (no processes)."""

import pytest

from benchbench.spec.config import check_config
from benchbench.spec.plan import PRESETS, Plan, infeasible_reason, resolve_plan, theoretical_bubble
from benchbench.study import expand

GPT = {"arch": "gpt", "layers": 4, "hidden": 32, "heads": 4, "seq_len": 16, "vocab": 64}
MLP = {"arch": "mlp", "width": 32, "depth": 2, "out_dim": 4}


def reason(strategy, ws, model=GPT, batch=16, **changes):
    plan = resolve_plan(strategy, ws)
    if changes:
        plan = Plan.from_dict({**plan.to_dict(), **changes})
    return infeasible_reason(plan, model, ws, batch)


def test_all_dimensions_take_the_remaining_ranks():
    assert (resolve_plan("tp", 4).tp, resolve_plan("tp", 4).dp) == (4, 1)
    assert (resolve_plan("pp-1f1b", 2).pp, resolve_plan("pp-1f1b", 2).dp) == (2, 1)
    p = resolve_plan("fsdp-tp", 8)
    assert (p.dp, p.tp, p.pp) == (4, 2, 1)
    p = resolve_plan("3d", 8)
    assert (p.dp, p.tp, p.pp) == (2, 2, 2)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_runs_on_gpt_somewhere(name):
    feasible = [ws for ws in (1, 2, 4, 8) if reason(name, ws, batch=32) is None]
    assert feasible, f"{name} is feasible at no world size"


def test_lossy_is_compression_and_float8():
    assert {n for n in PRESETS if resolve_plan(n, 2).lossy} == {"ddp-fp16", "ddp-bf16", "ddp-powersgd", "fsdp-float8"}


@pytest.mark.parametrize(
    ("strategy", "ws", "changes", "model", "expected"),
    [
        ("tp", 1, {}, GPT, "tp = 1 at world_size 1: the strategy splits tp and each needs >= 2 ranks"),
        ("fsdp-tp", 2, {}, GPT, "dp = 1 at world_size 2: the strategy splits dp x tp and each needs >= 2 ranks"),
        ("ddp-pp", 2, {}, GPT, "dp = 1 at world_size 2: the strategy splits dp x pp"),
        ("3d", 4, {}, GPT, "dp = 1 at world_size 4: the strategy splits dp x tp x pp"),
        ("tp", 2, {}, dict(GPT, heads=3, hidden=33), "tp = 2 does not divide heads = 3"),
        ("tp-sp", 2, {}, dict(GPT, seq_len=15), "tp = 2 does not divide seq_len = 15"),
        ("tp", 2, {}, MLP, "tensor parallel: the 'mlp' architecture declares no tensor-parallel plan"),
        ("pp-1f1b", 2, {}, MLP, "pipeline parallel: the 'mlp' architecture declares no pipeline split"),
        ("pp-1f1b", 2, {}, dict(GPT, layers=1), "2 pipeline stages exceed layers = 1"),
        ("pp-interleaved", 4, {}, GPT, "8 pipeline stages exceed layers = 4"),
        ("pp-1f1b", 4, {"micro_batches": 2}, GPT, "needs micro_batches >= pp = 4, got 2"),
        ("pp-interleaved", 2, {"micro_batches": 3}, GPT, "multiple of pp = 2, got 3"),
        ("pp-zbv", 2, {"virtual_stages": 3}, dict(GPT, layers=8), "zbv needs exactly 2 stages per rank"),
        ("pp-gpipe", 2, {"virtual_stages": 2}, GPT, "runs one stage per rank"),
        ("pp-dualpipev", 2, {"micro_batches": 2}, GPT, "dualpipev needs micro_batches >= its 2 * pp = 4 stages"),
        ("ddp-compile", 2, {}, MLP, "compile is applied per transformer block"),
        ("pp-zbv", 2, {"compile": True}, GPT, "zbv splits backward into input- and weight-gradient passes"),
        ("pp-dualpipev", 2, {"compile": True}, GPT, "dualpipev splits backward"),
        ("pp-1f1b", 2, {"micro_batches": 3}, GPT, "batch per dp rank 16 is not divisible by micro_batches = 3"),
        ("fsdp", 2, {"compression": "fp16"}, GPT, "compression fp16 is a DDP communication hook"),
        ("fsdp-tp", 4, {"dp_flavour": "ddp"}, GPT, "dp x tp composes FSDP2 over DTensor"),
        ("ddp-pp", 4, {"dp_flavour": "naive"}, GPT, "dp x pp wraps each stage in ddp or fsdp"),
        ("ddp-accum", 2, {"accum_steps": 3}, GPT, "batch per dp rank 8 is not divisible by accum_steps = 3"),
        ("3d", 2, {}, GPT, "world_size 2 is not divisible by tp*pp = 2*2"),
        ("ddp", 3, {}, GPT, "global batch 16 is not divisible by dp = 3"),
        # HSDP: never collapsed into FSDP (one replica) or DDP (shards of one); fsdp only
        ("hsdp", 2, {}, GPT, "HSDP: dp = 2 / dp_shard = 2 leaves 1 replica (needs >= 2; else it is fsdp)"),
        ("hsdp", 4, {"dp_shard": 3}, GPT, "HSDP: dp_shard = 3 does not divide dp = 4"),
        ("hsdp", 4, {"dp_shard": 1}, GPT, "dp_shard = 1: allowed 0 (shard over all dp ranks) or a shard group"),
        ("hsdp", 4, {"dp_flavour": "ddp"}, GPT, "dp_shard = 2 (HSDP) shards with FSDP2; dp_flavour is ddp"),
        # activation checkpointing: blocks of a gpt, a known mode
        ("ddp-ac", 2, {}, MLP, "activation checkpointing wraps transformer blocks; the 'mlp' architecture"),
        ("ddp-ac", 2, {"activation_checkpoint": "some"}, GPT, "activation_checkpoint 'some' not in ('none', 'full'"),
        ("fsdp-sac", 2, {"ac_every": 5}, GPT, "selective checkpointing: ac_every = 5 > layers = 4"),
        ("fsdp-sac", 2, {"ac_every": 0}, GPT, "ac_every = 0: allowed an integer >= 1"),
    ],
)
def test_infeasible_combinations_state_why(strategy, ws, changes, model, expected):
    r = reason(strategy, ws, model, **changes)
    assert r is not None and expected in r


def test_hsdp_splits_dp_into_replicas_and_shards():
    p = resolve_plan("hsdp", 8)
    assert (p.dp, p.dp_shard, p.replicas, p.shard_size) == (8, 2, 4, 2)
    assert reason("hsdp", 4) is None and reason("hsdp", 8, dp_shard=4) is None
    assert reason("hsdp", 8, tp=2, dp=4) is None  # composes with tp as fsdp does: 2 replicas x 2 shards x tp 2
    assert resolve_plan("fsdp", 4).shard_size == 4 and resolve_plan("fsdp", 4).replicas == 1


def test_feasible_hybrids_split_every_named_dimension():
    assert reason("3d", 8, batch=32) is None  # dp 2 x tp 2 x pp 2
    assert reason("ddp-pp", 4) is None  # dp 2 x pp 2
    assert reason("fsdp-tp", 4) is None  # dp 2 x tp 2
    assert resolve_plan("3d", 8).split_dims == ("dp", "tp", "pp")
    assert resolve_plan("fsdp-tp", 4).split_dims == ("dp", "tp")
    assert resolve_plan("tp", 4).split_dims == ("tp",) and resolve_plan("ddp", 4).split_dims == ()


@pytest.mark.parametrize(
    ("fields", "ws", "expected"),
    [
        ({"base": "fsdp", "tp": 2}, 2, "dp = 1 at world_size 2: the strategy splits dp x tp"),
        ({"base": "ddp", "pp": 2}, 2, "dp = 1 at world_size 2: the strategy splits dp x pp"),
        ({"base": "fsdp", "tp": 2}, 4, None),  # dp 2 x tp 2: a real 2-D plan
        ({"base": "pp-1f1b", "tp": 2}, 4, None),  # pp "all" x tp 2: tp x pp, no dp intended
    ],
)
def test_study_defined_hybrids_never_run_collapsed(fields, ws, expected):
    plan = resolve_plan("x", ws, {"x": fields})
    got = infeasible_reason(plan, GPT, ws, 16)
    assert got == expected or (expected is not None and got is not None and expected in got), got


def test_theoretical_bubble_formulas():
    assert theoretical_bubble(resolve_plan("pp-1f1b", 2)) == pytest.approx(1 / 5)  # (p-1)/(m+p-1), m=4
    assert theoretical_bubble(resolve_plan("pp-gpipe", 4)) == pytest.approx(3 / 7)
    assert theoretical_bubble(resolve_plan("pp-interleaved", 2)) == pytest.approx(1 / 9)  # v=2: (p-1)/(vm+p-1)
    assert theoretical_bubble(resolve_plan("pp-zbv", 2)) == pytest.approx(1 / 25)  # its replay: (p-1)/(6m+p-1)
    assert theoretical_bubble(resolve_plan("pp-dualpipev", 2)) == pytest.approx(1 / 25)  # (p-1)/(6m+p-1), m=4
    assert theoretical_bubble(resolve_plan("ddp", 2)) is None


def test_strategy_defs_compose_new_plans_from_config():
    cfg = check_config(
        {
            "study": "x",
            "models": {"g": dict(GPT, batch_size=16)},
            "world_sizes": [2],
            "strategies": ["ddp-1mb", "pp-8mb"],
            "strategy_defs": {
                "ddp-1mb": {"base": "ddp", "bucket_cap_mb": 1},
                "pp-8mb": {"base": "pp-1f1b", "micro_batches": 8},
            },
        }
    )
    jobs, dropped = expand(cfg)
    assert not dropped
    plans = {j.strategy: j.plan for j in jobs}
    assert plans["ddp-1mb"].bucket_cap_mb == 1 and plans["ddp-1mb"].dp_flavour == "ddp"
    assert plans["pp-8mb"].micro_batches == 8 and plans["pp-8mb"].pp == 2
    assert {j.micro_batches for j in jobs if j.strategy == "pp-8mb"} == {8}


def test_strategies_study_drops_with_reasons():
    from benchbench.spec.config import ROOT, load_config

    cfg = load_config(ROOT / "config/studies/strategies.yaml")
    jobs, dropped = expand(cfg)
    assert set(cfg["strategies"]) == set(PRESETS)
    assert all(d.reason for d in dropped)
    # each strategy runs at some world size, but the GPU-only ones, dropped on cpu-local with the device's reason
    assert {j.strategy for j in jobs} == set(PRESETS) - set(GPU_ONLY)
    # the tiny llama and vit (issue 14) run every plan their architecture allows: all but the
    # GPU-only ones; cp is gpt-only and the vit has no sequence parallelism
    for model, absent in (("llama-tiny", set()), ("vit-tiny", {"tp-sp"})):
        assert {j.strategy for j in jobs if j.model == model} == set(PRESETS) - set(GPU_ONLY) - absent, model
    for name, expected in GPU_ONLY.items():
        reasons = {d.reason for d in dropped if d.strategy == name and d.world_size == 2 and d.model == "gpt-small"}
        assert reasons and all(expected in r for r in reasons), (name, reasons)


def test_config_schema_knows_every_plan_field():
    from benchbench.spec.plan import PLAN_KEYS
    from benchbench.spec.schema import load_schema

    props = load_schema("config")["properties"]["strategy_defs"]["additionalProperties"]["properties"]
    assert set(props) == {"base", *PLAN_KEYS}


def test_powersgd_needs_its_warmup_before_the_timed_steps():
    cfg = check_config(
        {
            "study": "x",
            "models": {"g": dict(GPT, batch_size=16)},
            "world_sizes": [2],
            "strategies": ["ddp", "ddp-powersgd"],
            "warmup_steps": 1,
        }
    )
    jobs, dropped = expand(cfg)
    assert [j.strategy for j in jobs] == ["ddp"]
    assert "warmup_steps = 1 <= powersgd_warmup = 2" in dropped[0].reason


# ------------------------------------------------------------------- GPU-only steps (issue 13)

#: The GPU-only presets and the words of the reason the cpu-local device drops them with
#: (the CPU failures quoted were reproduced on torch 2.13 + gloo: benchbench/spec/gpu_features.py).
GPU_ONLY = {
    "cp": "aten._scaled_dot_product_flash_attention_for_cpu has no sharding strategy",
    "tp-async": "SymmetricMemory does not support device type cpu",
    "fsdp-float8": "float8: needs float8 tensor cores",
}


def _gpu_jobs(hardware, world_sizes=(2, 4, 8)):
    cfg = check_config(
        {
            "study": "x",
            "models": {"g": dict(GPT, batch_size=16)},
            "world_sizes": list(world_sizes),
            "hardware": [hardware],
            "strategies": sorted(GPU_ONLY),
            "dtype": "bf16",
        }
    )
    return expand(cfg)


@pytest.mark.parametrize("hardware", ["h100-sxm", "h200-sxm"])
def test_gpu_only_plans_expand_on_a_cuda_profile(hardware, monkeypatch):
    from benchbench.spec import gpu_features

    monkeypatch.setattr(gpu_features, "torchao_available", lambda: True)
    jobs, dropped = _gpu_jobs(hardware, (2, 4))
    assert not dropped, [d.reason for d in dropped]
    plans = {(j.strategy, j.world_size): j.plan for j in jobs}
    assert (plans["cp", 4].cp, plans["cp", 4].dp) == (4, 1)
    assert plans["tp-async", 2].async_tp and plans["tp-async", 2].tp == 2
    assert plans["fsdp-float8", 4].float8 and plans["fsdp-float8", 4].lossy


def test_float8_without_torchao_or_on_ampere_is_dropped_naming_it(monkeypatch):
    from benchbench.spec import gpu_features

    monkeypatch.setattr(gpu_features, "torchao_available", lambda: False)
    _, dropped = _gpu_jobs("h100-sxm", (2,))
    assert [d.strategy for d in dropped] == ["fsdp-float8"]
    assert "torchao" in dropped[0].reason and "not installed" in dropped[0].reason
    monkeypatch.setattr(gpu_features, "torchao_available", lambda: True)
    _, dropped = _gpu_jobs("a100-80gb-sxm", (2,))
    assert [d.strategy for d in dropped] == ["fsdp-float8"]
    assert "compute_capability = 8.0" in dropped[0].reason


@pytest.mark.parametrize(
    ("strategy", "ws", "changes", "model", "expected"),
    [
        ("cp", 4, {}, GPT, None),
        ("cp", 4, {}, dict(GPT, seq_len=12), "2 * cp = 8 (head-tail load balancing) does not divide seq_len = 12"),
        ("cp", 2, {"dp_flavour": "ddp"}, GPT, "context parallel composes with fsdp"),
        ("cp", 2, {}, MLP, "context parallel is defined for the gpt architecture"),
        ("tp-async", 2, {}, GPT, None),
        ("tp-async", 2, {"sequence_parallel": False}, GPT, "needs tp >= 2 and sequence_parallel"),
        ("fsdp", 2, {"async_tp": True}, GPT, "got tp = 1"),
        ("fsdp-float8", 2, {}, GPT, None),
        ("fsdp-float8", 2, {}, dict(GPT, hidden=40), "divisible by 16; hidden (width) = 40"),
        ("fsdp-float8", 2, {"tp": 2, "dp": 1}, GPT, "float8 is composed here with data and pipeline parallel, not tp"),
    ],
)
def test_gpu_step_plan_rules(strategy, ws, changes, model, expected):
    got = reason(strategy, ws, model=model, **changes)
    assert (got is None) if expected is None else (got and expected in got), got
