"""The correctness gate: one untimed, scale-sensitive step checked against the single-process
reference, built so that no optimizer can hide a gradient-scale bug.

Before the timed loop every rank builds the job's plan a second time with **plain SGD** (no
momentum, no weight decay, learning rate :data:`VERIFY_LR`) from the seeded initial weights and
runs one step on step 0's global batch. Rank 0 then runs the same step on the whole batch in one
process (the reference, in-process, same device and dtype) and compares:

* the loss;
* the gradients, parameter by parameter, gathered across the plan's shards (DTensor
  ``full_tensor``: FSDP, TP, their 2-D and 3-D compositions) and ranks (pipeline stages);
* the updated parameters (so the optimizer path — ZeRO-1's sharded update and broadcast — is
  checked too).

Tensors are compared through fingerprints (norm and :data:`PROJECTIONS` seeded random
projections, float64), so only a few numbers per parameter travel between ranks. A projection
difference estimates the norm of the difference (E⟨d, r⟩² = ‖d‖² for r ~ N(0, I)). Gradients scale
with a forgotten 1/N, a sum instead of a mean, a missing reduction or a wrong micro-batch, and SGD
passes that scale to the parameters: the errors below see it by construction. Replicas that hold
the same parameter (data-parallel ranks) must agree with each other too.

Numbers (registry: :mod:`benchbench.metrics`; definitions: docs/METRICS.md):
``verify_loss_rel_err``, ``verify_grad_rel_err`` (‖g − g_ref‖ / ‖g_ref‖ over all parameters),
``verify_grad_norm_rel_err``, ``verify_param_rel_err`` (‖p − p_ref‖ after the step / ‖p_0 − p_ref‖),
``verify_tolerance`` and ``verify_verdict``.
"""

from __future__ import annotations

import gc
import hashlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benchbench.job import Job
from benchbench.models import model_info
from benchbench.reductions import dist_sum, gather_objects
from benchbench.strategies.parallelize import seeded_model
from benchbench.trainers import DTYPES, autocast, build_trainer, shard_batch

VERIFY_LR = 0.5  # large enough that the update stands well above fp32 rounding of the weights
PROJECTIONS = 4
MAX_REFERENCE_PARAMS = 2_000_000_000  # rank 0 must hold a second, unsharded copy to verify
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_checkpoint_wrapped_module.", "_fsdp_wrapped_module.")


@dataclass(frozen=True)
class Tolerance:
    """Largest relative error an exact plan may show, and how the number was chosen."""

    rel: float
    basis: str


#: (dtype, device, TF32 allowed) -> tolerance for exact plans. See docs/METRICS.md for the measurements.
TOLERANCES: dict[tuple[str, str, bool], Tolerance] = {
    ("fp32", "cpu", False): Tolerance(1e-4, "measured max over every exact plan, 1-8 ranks, CPU fp32: 7.3e-7"),
    ("fp32", "cuda", False): Tolerance(1e-4, "as fp32 CPU (not yet measured on GPU: scripts/gpu-check.sh)"),
    ("fp32", "cuda", True): Tolerance(2e-2, "TF32 keeps 10 mantissa bits (2^-11 = 5e-4 per product); x40"),
    ("bf16", "cpu", False): Tolerance(5e-2, "measured max over exact plans, CPU bf16 autocast: 4.8e-3; x10"),
    ("bf16", "cuda", False): Tolerance(5e-2, "as bf16 CPU (bf16 keeps 8 mantissa bits)"),
    ("bf16", "cuda", True): Tolerance(5e-2, "as bf16 CPU (bf16 keeps 8 mantissa bits)"),
}
#: Lossy plans (gradient compression) are judged against their own bound.
LOSSY_BOUNDS: dict[str, Tolerance] = {
    "fp16": Tolerance(1e-2, "fp16 buckets: 11 mantissa bits; measured 2.8e-4 on CPU; x35"),
    "bf16": Tolerance(5e-2, "bf16 buckets: 8 mantissa bits; measured 2.3e-3 on CPU; x20"),
    "powersgd": Tolerance(1e-4, "the verified step is PowerSGD's warm-up (plain all-reduce): exact"),
}
VERDICTS = ("match", "MISMATCH", "lossy", "skipped")


def tolerance_for(job: Job, tf32: bool) -> Tolerance:
    """The tolerance the gate applies to ``job`` (its plan's lossy bound, or its precision's)."""
    if job.plan.lossy:
        return LOSSY_BOUNDS[job.plan.compression]
    return TOLERANCES[(job.dtype, job.hardware_cfg.device, tf32 and job.hardware_cfg.device == "cuda")]


def canonical_name(name: str) -> str:
    """A parameter's name without the prefixes wrappers add (DDP's ``module.``, compile's, …)."""
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def _projection(name: str, numel: int, device: torch.device) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little") % 2**63
    g = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(PROJECTIONS, numel, generator=g, device=device, dtype=torch.float64)


def fingerprint(t: torch.Tensor, name: str) -> list[float]:
    """``[‖t‖, ⟨t, r_1⟩, …, ⟨t, r_k⟩]`` in float64, with projections seeded by ``name``."""
    flat = t.detach().reshape(-1).to(torch.float64)
    proj = _projection(name, flat.numel(), flat.device) @ flat
    return [float(flat.norm()), *proj.tolist()]


def _full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor: DTensors (FSDP / TP shards, replicas) are gathered over their mesh."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def local_fingerprints(modules: list[nn.Module]) -> dict[str, dict[str, list[float]]]:
    """Fingerprints of every parameter and its gradient that this rank's modules hold.

    Collective for sharded parameters: every rank of a shard group must call it (same order)."""
    out: dict[str, dict[str, list[float]]] = {}
    for module in modules:
        for raw, p in module.named_parameters():
            name = canonical_name(raw)
            grad = _full(p.grad) if p.grad is not None else torch.zeros_like(_full(p.detach()))
            out[name] = {"param": fingerprint(_full(p.detach()), name), "grad": fingerprint(grad, name)}
    return out


def merge_replicas(per_rank: list[dict[str, dict[str, list[float]]]]) -> tuple[dict, float]:
    """One fingerprint per parameter from every rank's, and the largest relative disagreement
    between ranks that hold the same parameter (replicas must be identical)."""
    merged: dict[str, dict[str, list[float]]] = {}
    worst = 0.0
    for fps in per_rank:
        for name, fp in fps.items():
            if name not in merged:
                merged[name] = fp
                continue
            for kind in ("param", "grad"):
                scale = max(merged[name][kind][0], 1e-30)
                diff = max(abs(a - b) for a, b in zip(fp[kind], merged[name][kind], strict=True))
                worst = max(worst, diff / scale)
    return merged, worst


def _diff_norm(a: list[float], b: list[float]) -> float:
    """Estimate of ‖x − y‖ from fingerprints of x and y (RMS of the projection differences)."""
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a[1:], b[1:], strict=True)) / PROJECTIONS)


def compare(got: dict, ref: dict, loss: float, ref_loss: float, lr: float) -> dict[str, Any]:
    """Relative errors of the parallel step against the reference (fingerprint dicts by name)."""
    missing, extra = sorted(set(ref) - set(got)), sorted(set(got) - set(ref))
    common = [n for n in ref if n in got]
    g_ref = math.sqrt(sum(ref[n]["grad"][0] ** 2 for n in common)) or 1e-30
    g_got = math.sqrt(sum(got[n]["grad"][0] ** 2 for n in common))
    grad_err = {n: _diff_norm(got[n]["grad"], ref[n]["grad"]) for n in common}
    param_err = math.sqrt(sum(_diff_norm(got[n]["param"], ref[n]["param"]) ** 2 for n in common))
    worst = max(common, key=lambda n: grad_err[n] / max(ref[n]["grad"][0], 1e-6 * g_ref), default="")
    return {
        "loss_rel_err": abs(loss - ref_loss) / max(abs(ref_loss), 1e-30),
        "grad_rel_err": math.sqrt(sum(e**2 for e in grad_err.values())) / g_ref,
        "grad_norm_rel_err": abs(g_got - g_ref) / g_ref,
        "param_rel_err": param_err / (lr * g_ref),
        "missing": missing,
        "extra": extra,
        "worst_param": worst,
    }


def verdict(errors: dict[str, Any], replica_err: float, tol: Tolerance, lossy: bool) -> tuple[str, str]:
    """The gate's verdict and, when it is not a match, what exceeded the tolerance."""
    if errors["missing"] or errors["extra"]:
        return "MISMATCH", f"parameters missing {errors['missing'][:5]}, unexpected {errors['extra'][:5]}"
    checks = {k: errors[k] for k in ("loss_rel_err", "grad_rel_err", "grad_norm_rel_err", "param_rel_err")}
    checks["replica_rel_err"] = replica_err
    over = {k: v for k, v in checks.items() if not v <= tol.rel}  # NaN counts as over
    if over:
        detail = ", ".join(f"{k} {v:.3g}" for k, v in over.items())
        return "MISMATCH", f"{detail} > {tol.rel:g} (worst parameter: {errors['worst_param']})"
    return ("lossy" if lossy else "match"), ""


def reference_step(job: Job, device: torch.device, x: torch.Tensor, y: torch.Tensor, loss_fn: Any) -> tuple:
    """The single-process SGD step on the whole global batch: (loss, fingerprints by name)."""
    model = seeded_model(job, device)
    opt = torch.optim.SGD(model.parameters(), lr=VERIFY_LR)
    with autocast(device, DTYPES[job.dtype]):
        out = model(x)
    loss = loss_fn(out, y)
    loss.backward()
    grads = {n: fingerprint(p.grad, n) for n, p in model.named_parameters()}
    opt.step()
    fps = {n: {"param": fingerprint(p.detach(), n), "grad": grads[n]} for n, p in model.named_parameters()}
    return float(loss.detach()), fps


def _skipped(reason: str) -> dict[str, Any]:
    return {"verify_verdict": "skipped", "verify_detail": reason}


def verify_first_step(job: Job, device: torch.device, task: Any, dp_rank: int, rank: int) -> dict[str, Any] | None:
    """Run the gate on every rank; rank 0 returns its summary entries (``verify_*``), others ``None``.

    Untimed; the SGD-built model is freed before the timed trainer is built."""
    if model_info(job.model_cfg).params > MAX_REFERENCE_PARAMS:
        reason = f"model over {MAX_REFERENCE_PARAMS:.0e} parameters: no in-process reference"
        return _skipped(reason) if rank == 0 else None
    trainer = build_trainer(job, device, task.loss_fn, optimizer="sgd", lr=VERIFY_LR)
    x, y = task.batch(0, job.global_batch)
    loss = trainer.train_step(*shard_batch(job, x, y, dp_rank, device))
    mine = local_fingerprints(trainer.modules)
    held = torch.tensor([float(loss) if loss is not None else 0.0, float(loss is not None)], dtype=torch.float64)
    total = dist_sum(held, device)
    per_rank = gather_objects(mine)
    del trainer
    gc.collect()
    if rank != 0:
        return None
    merged, replica_err = merge_replicas(per_rank)
    ref_loss, ref = reference_step(job, device, x.to(device), y.to(device), task.loss_fn)
    errors = compare(merged, ref, float(total[0] / total[1]), ref_loss, VERIFY_LR)
    tol = tolerance_for(job, tf32=bool(device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32))
    result, detail = verdict(errors, replica_err, tol, job.plan.lossy)
    return {
        "verify_loss_rel_err": errors["loss_rel_err"],
        "verify_grad_rel_err": errors["grad_rel_err"],
        "verify_grad_norm_rel_err": errors["grad_norm_rel_err"],
        "verify_param_rel_err": errors["param_rel_err"],
        "verify_replica_rel_err": replica_err,
        "verify_tolerance": tol.rel,
        "verify_verdict": result,
        "verify_detail": detail,
    }
