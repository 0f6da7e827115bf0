"""config/studies/gpu-node.yaml validates and expands here, without a GPU: its models' sizes,
the memory drops of the ~8B model and the GPU-only plans on the cuda profiles (no processes)."""

import pytest
import yaml

from benchbench.models.registry import model_info
from benchbench.spec.config import ROOT, check_config
from benchbench.spec.plan import PRESETS
from benchbench.study import expand


@pytest.fixture(scope="module")
def study():
    raw = yaml.safe_load((ROOT / "config/studies/gpu-node.yaml").read_text())
    missing = {s for s in raw["strategies"] if s not in PRESETS}
    assert not missing, f"the study names unknown strategies {missing}"
    return check_config(raw)


@pytest.fixture(scope="module")
def expanded(study):
    mp = pytest.MonkeyPatch()
    from benchbench.spec import gpu_features

    mp.setattr(gpu_features, "torchao_available", lambda: True)  # as on a GPU node with torchao
    try:
        jobs, dropped = expand(study)
    finally:
        mp.undo()
    return {(j.model, j.hardware, j.strategy, j.world_size): j for j in jobs}, dropped


def test_models_are_about_1b_and_8b_in_bf16(study):
    assert study["dtype"] == "bf16" and set(study["world_sizes"]) == {1, 2, 4, 8}
    assert set(study["hardware"]) == {"h100-sxm", "h200-sxm"}
    params = {m: model_info(cfg).params for m, cfg in study["models"].items()}
    assert 0.8e9 < params["gpt-1b"] < 1.2e9 and 7e9 < params["gpt-8b"] < 9e9, params


def test_every_preset_is_in_the_study(study):
    assert set(study["strategies"]) == set(PRESETS)


def test_the_8b_runs_only_sharded(expanded):
    jobs, dropped = expanded
    replicated = (("single", 1), ("ddp", 2))  # (strategy, world size capped at 2): where plan rules accept it
    unsharded = [d for d in dropped if d.model == "gpt-8b" and (d.strategy, min(d.world_size, 2)) in replicated]
    assert unsharded and all(d.reason.startswith("memory: the cost model predicts") for d in unsharded)
    assert "> memory_gb = 80" in next(d.reason for d in unsharded if d.hardware == "h100-sxm")
    for hw in ("h100-sxm", "h200-sxm"):
        assert ("gpt-8b", hw, "fsdp", 8) in jobs and ("gpt-8b", hw, "single", 1) not in jobs
    assert not any(d.reason.startswith("memory") for d in dropped if d.model == "gpt-1b")
    # no plan holding the 8B's whole state on one GPU runs, checkpointed or not (ddp-ac on H200
    # fitted 141 GB before DDP's gradient buckets, 33 GB, were counted)
    whole = [
        k
        for k, j in jobs.items()
        if k[0] == "gpt-8b" and j.plan.tp == j.plan.pp == 1 and j.plan.dp_flavour in ("none", "naive", "ddp")
    ]
    assert not whole, whole


def test_gpu_only_plans_expand_on_both_gpus(expanded):
    jobs, _ = expanded
    for hw in ("h100-sxm", "h200-sxm"):
        for ws in (2, 4, 8):
            assert {("gpt-1b", hw, s, ws) for s in ("cp", "tp-async", "fsdp-float8")} <= set(jobs)
        assert jobs["gpt-1b", hw, "fsdp-float8", 1].plan.lossy
