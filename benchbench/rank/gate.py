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
projections, summed in float64; a parameter and its gradient share the projections), so only a
few numbers per parameter travel between ranks. A projection difference estimates the norm of
the difference (E⟨d, r⟩² = ‖d‖² for r ~ N(0, I)). Gradients scale
with a forgotten 1/N, a sum instead of a mean, a missing reduction or a wrong micro-batch, and SGD
passes that scale to the parameters: the errors below see it by construction. Replicas that hold
the same parameter (data-parallel ranks) must agree with each other too.

Numbers (registry: :mod:`benchbench.spec.metrics`; definitions: docs/METRICS.md):
``verify_loss_rel_err``, ``verify_grad_rel_err`` (‖g − g_ref‖ / ‖g_ref‖ over all parameters),
``verify_grad_norm_rel_err``, ``verify_param_rel_err`` (‖p − p_ref‖ after the step / ‖p_0 − p_ref‖),
``verify_tolerance`` and ``verify_verdict``.
"""

from __future__ import annotations

import gc
import hashlib
import math
from typing import Any

import torch
from torch import nn

from benchbench.models.registry import model_info
from benchbench.rank.reductions import dist_sum, gather_objects
from benchbench.rank.train_step import DTYPES, autocast, build_trainer, shard_batch
from benchbench.spec.job import Job
from benchbench.spec.plan import Tolerance, lossy_bound
from benchbench.strategies.parallelize import seeded_model

VERIFY_LR = 0.5  # large enough that the update stands well above fp32 rounding of the weights
PROJECTIONS = 4
#: A parameter's gradient error is relative to its own gradient norm, but at least this share of
#: the global one (a parameter whose gradient is all but zero would otherwise divide by ~0).
PARAM_FLOOR = 1e-3
#: The per-parameter check allows this multiple of the tolerance: one tensor's rounding error is
#: noisier than the whole gradient's (bf16 on CPU: 1.2e-2 for one tensor, 3.9e-3 for all), and a
#: bug confined to one tensor (a doubled or missing gradient) is an error of ~1 there.
PER_PARAM_FACTOR = 10
MAX_REFERENCE_PARAMS = 2_000_000_000  # rank 0 must hold a second, unsharded copy to verify
_WRAPPER_COMPONENTS = {"_orig_mod", "_checkpoint_wrapped_module", "_fsdp_wrapped_module"}  # anywhere in a name


#: (dtype, device, TF32 allowed) -> tolerance for exact plans (lossy plans: their own bound,
#: :data:`benchbench.spec.plan.LOSSY_BOUNDS`). See docs/METRICS.md for the measurements.
TOLERANCES: dict[tuple[str, str, bool], Tolerance] = {
    ("fp32", "cpu", False): Tolerance(1e-4, "measured max over every exact plan, 2-8 ranks, CPU fp32: 7.1e-7"),
    ("fp32", "cuda", False): Tolerance(1e-4, "as fp32 CPU (not yet measured on GPU: scripts/gpu-check.sh)"),
    ("fp32", "cuda", True): Tolerance(2e-2, "TF32 keeps 10 mantissa bits (2^-11 = 5e-4 per product); x40"),
    ("bf16", "cpu", False): Tolerance(5e-2, "measured max over exact plans, CPU bf16 autocast: 3.9e-3; x13"),
    ("bf16", "cuda", False): Tolerance(5e-2, "as bf16 CPU (bf16 keeps 8 mantissa bits)"),
    ("bf16", "cuda", True): Tolerance(5e-2, "as bf16 CPU (bf16 keeps 8 mantissa bits)"),
}
VERDICTS = ("match", "MISMATCH", "lossy", "skipped")


def tolerance_for(job: Job, tf32: bool) -> Tolerance:
    """The tolerance the gate applies to ``job`` (its plan's lossy bound, or its precision's)."""
    bound = lossy_bound(job.plan)
    if bound is not None:
        return bound
    return TOLERANCES[(job.dtype, job.hardware_cfg.device, tf32 and job.hardware_cfg.device == "cuda")]


def canonical_name(name: str) -> str:
    """A parameter's name without the components wrappers add: DDP's leading ``module``,
    ``torch.compile``'s and activation checkpointing's wrapper modules wherever they sit."""
    parts = name.split(".")
    if parts[0] == "module":
        parts = parts[1:]
    return ".".join(p for p in parts if p not in _WRAPPER_COMPONENTS)


#: Elements per chunk of a fingerprint: the float64 copies and projection draws it holds at a time.
FINGERPRINT_CHUNK = 1 << 20


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little") % 2**63


def fingerprints(name: str, *tensors: torch.Tensor | None) -> list[list[float] | None]:
    """``[‖t‖, ⟨t, r_1⟩, …, ⟨t, r_k⟩]`` in float64 for each of ``tensors`` (a parameter and its
    gradient: the same size), ``None`` for no tensor. The r_i are standard normal vectors seeded by
    ``name``, drawn once for all the tensors: in float32 (a Gaussian vector like any other; 5x
    cheaper to draw than float64 on CPU) and widened to float64, where the products are summed.
    Chunk by chunk of :data:`FINGERPRINT_CHUNK` elements, so the extra memory is a few chunks'
    whatever the tensor's size. The same name and size always give the same r_i."""
    flats = [None if t is None else t.detach().reshape(-1) for t in tensors]
    present = [f for f in flats if f is not None]
    if not present:
        return [None] * len(flats)
    n, device = present[0].numel(), present[0].device
    g = torch.Generator(device=device).manual_seed(_seed(name))
    sums = [[0.0] * (PROJECTIONS + 1) for _ in flats]  # [sum of squares, projections...]
    for start in range(0, n, FINGERPRINT_CHUNK):
        chunks = [None if f is None else f[start : start + FINGERPRINT_CHUNK].to(torch.float64) for f in flats]
        size = min(FINGERPRINT_CHUNK, n - start)
        for c, acc in zip(chunks, sums, strict=True):
            if c is not None:
                acc[0] += float(c @ c)
        for k in range(1, PROJECTIONS + 1):
            r = torch.randn(size, generator=g, device=device, dtype=torch.float32).to(torch.float64)
            for c, acc in zip(chunks, sums, strict=True):
                if c is not None:
                    acc[k] += float(r @ c)
    return [None if f is None else [math.sqrt(acc[0]), *acc[1:]] for f, acc in zip(flats, sums, strict=True)]


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
            grad = _full(p.grad) if p.grad is not None else None
            out[name] = param_and_grad(_full(p.detach()), grad, name)
    return out


def param_and_grad(param: torch.Tensor, grad: torch.Tensor | None, name: str) -> dict[str, list[float]]:
    """A parameter's and its gradient's fingerprints, from the same projections; a parameter that
    got no gradient counts as a zero gradient."""
    fp_param, fp_grad = fingerprints(name, param, grad)
    return {"param": fp_param, "grad": fp_grad or [0.0] * (PROJECTIONS + 1)}


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
    per_param = {n: grad_err[n] / max(ref[n]["grad"][0], PARAM_FLOOR * g_ref) for n in common}
    worst = max(per_param, key=per_param.get, default="")
    return {
        "loss_rel_err": abs(loss - ref_loss) / max(abs(ref_loss), 1e-30),
        "grad_rel_err": math.sqrt(sum(e**2 for e in grad_err.values())) / g_ref,
        "grad_norm_rel_err": abs(g_got - g_ref) / g_ref,
        "param_rel_err": param_err / (lr * g_ref),
        "missing": missing,
        "extra": extra,
        "worst_param": worst,
        "worst_param_rel_err": per_param.get(worst, 0.0),
    }


def verdict(errors: dict[str, Any], replica_err: float, tol: Tolerance, lossy: bool) -> tuple[str, str]:
    """The gate's verdict and, when it is not a match, what exceeded the tolerance."""
    if errors["missing"] or errors["extra"]:
        return "MISMATCH", f"parameters missing {errors['missing'][:5]}, unexpected {errors['extra'][:5]}"
    checks = {k: errors[k] for k in ("loss_rel_err", "grad_rel_err", "grad_norm_rel_err", "param_rel_err")}
    checks["replica_rel_err"] = replica_err
    over = {k: v for k, v in checks.items() if not v <= tol.rel}  # NaN counts as over
    if not errors["worst_param_rel_err"] <= PER_PARAM_FACTOR * tol.rel:  # one tensor rounds noisier than all
        over["worst_param_rel_err"] = errors["worst_param_rel_err"]
    if over:
        detail = ", ".join(f"{k} {v:.3g}" for k, v in over.items())
        return "MISMATCH", f"{detail} > {tol.rel:g} (worst parameter: {errors['worst_param']})"
    return ("lossy" if lossy else "match"), ""


def reference_step(job: Job, device: torch.device, x: torch.Tensor, y: torch.Tensor, loss_fn: Any) -> tuple:
    """The single-process SGD step on the whole global batch: (loss, fingerprints by name).

    The batch goes through in ``dp`` chunks of one data-parallel rank's size, each loss scaled by
    1 / dp (gradient accumulation: the same step, at one rank's activation memory)."""
    model = seeded_model(job, device)
    opt = torch.optim.SGD(model.parameters(), lr=VERIFY_LR)
    total = 0.0
    for xc, yc in zip(x.chunk(job.dp), y.chunk(job.dp), strict=True):
        with autocast(device, DTYPES[job.dtype]):
            out = model(xc)
        loss = loss_fn(out, yc) / job.dp
        loss.backward()
        total += float(loss.detach())
    opt.step()  # plain SGD leaves the gradients as they were: fingerprinted with the updated parameters
    named = [(canonical_name(n), p) for n, p in model.named_parameters()]
    return total, {n: param_and_grad(p.detach(), p.grad, n) for n, p in named}


def warmup_steps(job: Job) -> int:
    """Steps at learning rate 0 before the verified one, so that it runs in steady state: DDP puts
    every gradient in one bucket on the first step and rebuilds its buckets (``bucket_cap_mb``)
    after it; PowerSGD all-reduces plainly for ``powersgd_warmup`` steps before compressing.
    Every other plan takes one too: the timed steps are steady-state steps, and a bug that is
    right on a first step only (state cached by the first call: a hand-written sync that keeps the
    first step's gradient tensors, a pipeline's shape inference, a compiled graph's first call)
    must not pass the gate (tests/test_gate.py, ``dp-stale-grads``)."""
    return job.plan.powersgd_warmup if job.plan.compression == "powersgd" else 1


def _skipped(reason: str) -> dict[str, Any]:
    return {"verify_verdict": "skipped", "verify_detail": reason}


def parallel_step(job: Job, device: torch.device, task: Any, dp_rank: int) -> tuple[float, list[dict]]:
    """Every rank: build the plan with SGD, take the warm-up steps at lr 0 and the verified step,
    then gather the fingerprints. Returns (global loss, each rank's fingerprints); frees the model."""
    trainer = build_trainer(job, device, task.loss_fn, optimizer="sgd", lr=0.0)
    batch = shard_batch(job, *task.batch(0, job.global_batch), dp_rank, device)
    for _ in range(warmup_steps(job)):  # lr 0: nothing moves, but the verified step is a steady-state one
        trainer.train_step(*batch)
    for group in trainer.optimizer.param_groups:
        group["lr"] = VERIFY_LR
    loss = trainer.train_step(*batch)
    mine = local_fingerprints(trainer.modules)
    held = torch.tensor([float(loss) if loss is not None else 0.0, float(loss is not None)], dtype=torch.float64)
    total = dist_sum(held, device)  # the loss is the mean over the ranks that hold one
    per_rank = gather_objects(mine)
    del trainer
    gc.collect()
    return float(total[0] / total[1]), per_rank


def is_reference(job: Job) -> bool:
    """Whether the job is the reference itself: a single-process plan that changes nothing the
    reference step does (no activation checkpointing, compile, float8 or accumulation). A
    single-process plan that does is gated like any other (its one "rank" against the reference)."""
    p = job.plan
    changes = p.activation_checkpoint != "none" or p.compile or p.float8 or p.accum_steps != 1
    return not job.distributed and not changes


def verify_first_step(job: Job, device: torch.device, task: Any, dp_rank: int, rank: int) -> dict[str, Any] | None:
    """Run the gate on every rank; rank 0 returns its summary entries (``verify_*``), others ``None``.

    Untimed, and run after the timed measurements, so it adds nothing to their time or memory."""
    if is_reference(job):
        return _skipped("single-process plan: it is the reference")
    if model_info(job.model_cfg).params > MAX_REFERENCE_PARAMS:
        reason = f"model over {MAX_REFERENCE_PARAMS:.0e} parameters: no in-process reference"
        return _skipped(reason) if rank == 0 else None
    loss, per_rank = parallel_step(job, device, task, dp_rank)
    if rank != 0:
        return None
    merged, replica_err = merge_replicas(per_rank)
    x, y = task.batch(0, job.global_batch)
    try:
        ref_loss, ref = reference_step(job, device, x.to(device), y.to(device), task.loss_fn)
    except torch.OutOfMemoryError as e:
        return _skipped(f"the unsharded reference does not fit on rank 0's device: {str(e)[:200]}")
    errors = compare(merged, ref, loss, ref_loss, VERIFY_LR)
    tol = tolerance_for(job, tf32=bool(device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32))
    result, detail = verdict(errors, replica_err, tol, job.plan.lossy)
    return {
        "verify_loss_rel_err": errors["loss_rel_err"],
        "verify_grad_rel_err": errors["grad_rel_err"],
        "verify_grad_norm_rel_err": errors["grad_norm_rel_err"],
        "verify_param_rel_err": errors["param_rel_err"],
        "verify_replica_rel_err": replica_err,
        "verify_worst_param_rel_err": errors["worst_param_rel_err"],
        "verify_tolerance": tol.rel,
        "verify_verdict": result,
        "verify_detail": detail,
    }
