"""The gate's fingerprints, in one process: a parameter and its gradient share their projections
(drawn once), the chunked float64 sums are the whole tensor's, a projection difference estimates
the norm of the difference, and a gradient-scale bug reads as an error of about 1. The gate on
real plans and its injected bugs: tests/test_gate.py, tests/test_strategies.py."""

import math

import pytest
import torch

from benchbench.rank import gate as verify
from tests.helpers.jobs import make_test_job


def test_a_parameter_and_its_gradient_share_the_projections():
    p, g = torch.randn(3, 5), torch.randn(3, 5)
    both = verify.fingerprints("w", p, g)
    assert both == [verify.fingerprints("w", p)[0], verify.fingerprints("w", g)[0]]
    assert verify.fingerprints("w", p, None) == [both[0], None] and verify.fingerprints("w", None) == [None]
    assert verify.fingerprints("v", p)[0][1:] != both[0][1:]  # the name seeds the projections
    assert verify.param_and_grad(p, None, "w")["grad"] == [0.0] * (verify.PROJECTIONS + 1)


def test_chunked_sums_are_the_whole_tensors(monkeypatch):
    a, b = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    monkeypatch.setattr(verify, "FINGERPRINT_CHUNK", 7)  # 8 chunks, the last one short
    fa, fb, fd = verify.fingerprints("w", a, b, a - b)
    assert fa[0] == pytest.approx(float(a.norm()), rel=1e-12)
    # linear: the projections of a difference are the differences of the projections
    assert [x - y for x, y in zip(fa[1:], fb[1:], strict=True)] == pytest.approx(fd[1:], rel=1e-9, abs=1e-12)
    # E<d, r>^2 = |d|^2: over 400 names' projections (1,600) the mean square is |d|^2, to ~4 sigma
    squares = [x**2 for i in range(400) for x in verify.fingerprints(f"w{i}", a - b)[0][1:]]
    assert sum(squares) / len(squares) == pytest.approx(float((a - b).norm()) ** 2, rel=0.15)


def test_a_forgotten_one_over_n_is_an_error_of_one_and_float32_rounding_is_not():
    torch.manual_seed(0)
    params = {f"l{i}.weight": torch.randn(64, 32) for i in range(3)}
    grads = {n: torch.randn(64, 32) for n in params}

    def fps(scale: float, noise: float = 0.0) -> dict:
        out = {}
        for n, p in params.items():
            g = grads[n] * scale * (1 + noise * torch.randn_like(grads[n]))
            out[n] = verify.param_and_grad(p - verify.VERIFY_LR * g, g, n)
        return out

    ref = fps(1.0)
    same = verify.compare(fps(1.0, noise=1e-7), ref, 1.0, 1.0, verify.VERIFY_LR)  # fp32-sized rounding
    doubled = verify.compare(fps(2.0), ref, 1.0, 1.0, verify.VERIFY_LR)  # a sum instead of a mean over 2 ranks
    tol = verify.TOLERANCES[("fp32", "cpu", False)]
    assert verify.verdict(same, 0.0, tol, lossy=False) == ("match", "")
    assert math.isclose(doubled["grad_norm_rel_err"], 1.0, rel_tol=1e-6)
    assert 0.5 < doubled["grad_rel_err"] < 2 and 0.5 < doubled["param_rel_err"] < 2
    assert verify.verdict(doubled, 0.0, tol, lossy=False)[0] == "MISMATCH"


@pytest.mark.parametrize("strategy", ["ddp", "zero1", "ddp-compile", "ddp-pp", "dp-naive", "fsdp", "tp", "pp-1f1b"])
def test_every_plan_takes_an_lr0_warmup_step_so_the_verified_step_is_not_a_first_step(strategy):
    """DDP (and ZeRO-1, built on it) rebuild their buckets after the first step, and any plan can
    hold state that only a first step gets right (tests/test_gate.py, ``dp-stale-grads``): one
    warm-up step at learning rate 0 before the verified one; PowerSGD its plain all-reduce steps."""
    ws = 4 if strategy == "ddp-pp" else 2
    assert verify.warmup_steps(make_test_job(strategy, ws)) == 1
    powersgd = make_test_job("ddp-powersgd", 2)
    assert verify.warmup_steps(powersgd) == powersgd.plan.powersgd_warmup > 1


def test_the_reference_sgd_step_leaves_the_gradients_it_is_fingerprinted_with():
    """reference_step fingerprints each gradient after ``opt.step()`` (with its updated parameter,
    one set of projections): plain SGD must not touch the gradients."""
    w = torch.nn.Parameter(torch.randn(4, 3))
    w.grad = torch.randn(4, 3)
    before = w.grad.clone()
    torch.optim.SGD([w], lr=verify.VERIFY_LR).step()
    assert torch.equal(w.grad, before)
