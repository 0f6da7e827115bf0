"""The cost model's roofline from spec (benchbench/costmodel/roofline.py): a GEMM's time is the
larger of its compute and memory times, a block's forward and backward sum its operation classes
at their attainable fractions, from-spec predictions of transformers use it (other models keep the
one spec efficiency), and a profile's fractions must each name their source."""

from __future__ import annotations

import copy

import pytest
import yaml

from benchbench.costmodel.calibration import from_spec
from benchbench.costmodel.compute import phases
from benchbench.costmodel.context import Ctx
from benchbench.costmodel.roofline import Device, Gemm, Ops, block_ops, head_ops
from benchbench.models.presets import PRESETS
from benchbench.spec.hardware import HARDWARE_DIR, load_hardware
from benchbench.spec.schema import ConfigError, validate
from tests.helpers.jobs import TINY_MLP, make_test_job

DEVICE = Device(peak_flops=1e12, hbm_bytes_per_s=1e9, attainable={"gemm": 0.5, "attention": 0.25, "hbm": 1.0})
LLAMA_8B = {"arch": "llama", **PRESETS["llama"]["8b"]}


def test_a_gemm_takes_the_larger_of_its_compute_and_memory_times():
    """1000³ in bf16: compute 2·10⁹ / (10¹² · 0.5) = 4 ms, memory 3·10⁶ elements · 2 B / 10⁹ B/s =
    6 ms → memory-bound, 6 ms; 4000³: compute 256 ms > memory 96 ms."""
    assert DEVICE.gemm_s(Gemm("g", 1000, 1000, 1000), 2) == pytest.approx(6e-3)
    assert DEVICE.gemm_s(Gemm("g", 4000, 4000, 4000), 2) == pytest.approx(0.256)


def test_backward_runs_two_gemms_2_5x_attention_and_twice_the_bytes():
    """Forward = GEMMs + attention FLOPs / (peak · attention) + bytes / HBM; backward = the input's
    and the weight's gradient GEMMs, 2.5× the attention (FlashAttention-2's count), 2× the bytes."""
    g = Gemm("g", 4000, 2000, 1000)  # compute-bound in every orientation at this device
    ops = Ops([g], attention_flops=1e9, memory_bytes=1e6)
    f, b = DEVICE.seconds(ops, 2)
    gemm = 2 * 4000 * 2000 * 1000 / 5e11
    assert f == pytest.approx(gemm + 1e9 / 2.5e11 + 1e-3)
    assert b == pytest.approx(2 * gemm + 2.5 * 1e9 / 2.5e11 + 2e-3)


def test_llama_block_gemms_are_its_projections_at_the_tp_shard():
    """Llama 3 8B, 2 sequences of 8192, tp 4: the block's GEMM FLOPs are 2·M·(2d² + 2d·d_kv + 3d·f)/tp
    (models/formulas.py's count), attention 2·T²·d·b/tp; the head's 2·M·d·V/tp."""
    d, kv, f, t, v = 4096, 1024, 14336, 8192, 128256
    ops = block_ops(LLAMA_8B, 2, 4, 2, 2)
    m = 2 * t
    assert sum(2 * g.m * g.n * g.k for g in ops.gemms) == pytest.approx(
        2 * m * (2 * d * d + 2 * d * kv + 3 * d * f) / 4
    )
    assert ops.attention_flops == pytest.approx(2 * t * t * d * 2 / 4)
    (head,) = head_ops(LLAMA_8B, 2, 4, 2).gemms
    assert 2 * head.m * head.n * head.k == pytest.approx(2 * m * d * v / 4)


def test_from_spec_predicts_transformers_by_the_roofline_and_other_models_by_one_efficiency():
    """On h100-sxm (attainable fractions given), a Llama job's compute comes from the roofline and
    says so; an MLP's from FLOPs / (peak × spec_compute_efficiency) as before."""
    h100 = load_hardware("h100-sxm")
    cal = from_spec("h100-sxm", h100)
    llama = make_test_job("fsdp", 8, model_cfg=LLAMA_8B, seq_len=8192, hardware_cfg=h100, dtype="bf16", global_batch=16)
    ctx = Ctx(llama, cal)
    f, b, _ = phases(ctx, 2)
    assert any("roofline" in n for n in ctx.notes)
    assert 0.3 < f < 0.6 and 2 * f < b < 3 * f  # Llama 3 8B, 16,384 tokens: 0.47 s forward at 80 % of 989 TFLOP/s
    mlp = make_test_job("ddp", 8, model_cfg=dict(TINY_MLP), hardware_cfg=h100, dtype="bf16")
    ctx = Ctx(mlp, cal)
    phases(ctx, 4)
    assert not any("roofline" in n for n in ctx.notes) and any("compute from spec: bf16" in n for n in ctx.notes)


def test_a_profile_without_attainable_keeps_the_spec_efficiency():
    """a100-80gb-sxm gives no attainable fractions: Llama compute is FLOPs / (peak × 0.45)."""
    a100 = load_hardware("a100-80gb-sxm")
    job = make_test_job("fsdp", 8, model_cfg=LLAMA_8B, seq_len=8192, hardware_cfg=a100, dtype="bf16", global_batch=16)
    ctx = Ctx(job, from_spec("a100-80gb-sxm", a100))
    phases(ctx, 2)
    assert not any("roofline" in n for n in ctx.notes)


@pytest.mark.parametrize(
    "broken",
    [
        lambda a: a["gemm"].pop("source"),  # a fraction without its source
        lambda a: a.pop("hbm"),  # a class missing
        lambda a: a["attention"].update(fraction=1.5),  # above the peak
    ],
)
def test_attainable_fractions_each_need_their_source(broken):
    """The shipped h100-sxm profile validates; with a fraction's source removed, a class missing or
    a fraction above 1 it does not."""
    raw = yaml.safe_load((HARDWARE_DIR / "h100-sxm.yaml").read_text())
    validate(raw, "hardware", "h100-sxm")
    bad = copy.deepcopy(raw)
    broken(bad["attainable"])
    with pytest.raises(ConfigError, match="attainable"):
        validate(bad, "hardware", "broken h100-sxm")
