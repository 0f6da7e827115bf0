"""The compute side of a rank's step: the model's forward, backward and optimizer seconds at a
batch (interpolated from the calibration's measured phases, else FLOPs / the spec rate), the share
activation checkpointing recomputes, the FLOP/s the rank achieves, its memory bandwidth, float8's
faster matmuls and a CPU's oversubscription (docs/METRICS.md, "Predictions")."""

from __future__ import annotations

from typing import Any

from benchbench.costmodel.calibration import ADAMW_BYTES_PER_PARAM, FROM_SPEC, Calibration, PhasePoint
from benchbench.costmodel.context import Ctx
from benchbench.costmodel.roofline import CLASSES, Device, model_seconds, supported
from benchbench.costmodel.tensors import FP32, gpt_layer_flops
from benchbench.models.formulas import boundary
from benchbench.models.registry import ARCHITECTURES, model_info, size_args
from benchbench.models.tensors import stage_layers
from benchbench.spec.job import Job
from benchbench.spec.plan import checkpointed_blocks


def _same_model(cal: Calibration, label: str, model_cfg: dict[str, Any]) -> bool:
    known = cal.model_cfgs.get(label)
    if known is None:
        return True
    return {k: v for k, v in known.items() if k != "batch_size"} == model_cfg


def _interpolate(points: list[PhasePoint], batch: float) -> tuple[float, float, bool]:
    """Forward and backward seconds at ``batch``: linear between the measured points around it,
    affine through the two nearest beyond them (one point: proportional to the batch); the flag
    says the batch lies outside the measured ones."""
    pts = sorted(points, key=lambda p: p.batch)
    if len(pts) == 1:
        s = batch / pts[0].batch
        return pts[0].forward_s * s, pts[0].backward_s * s, batch != pts[0].batch
    lo = max([p for p in pts if p.batch <= batch] or pts[:1], key=lambda p: p.batch)
    hi = min([p for p in pts if p.batch >= batch] or pts[-1:], key=lambda p: p.batch)
    outside = batch < pts[0].batch or batch > pts[-1].batch
    if outside:
        lo, hi = (pts[0], pts[1]) if batch < pts[0].batch else (pts[-2], pts[-1])
    if hi.batch == lo.batch:
        return lo.forward_s, lo.backward_s, False
    w = (batch - lo.batch) / (hi.batch - lo.batch)
    f = lo.forward_s + w * (hi.forward_s - lo.forward_s)
    b = lo.backward_s + w * (hi.backward_s - lo.backward_s)
    if f <= 0 or b <= 0:  # an affine extrapolation below zero: proportional to the nearest point
        near = lo if batch < lo.batch else hi
        f, b = near.forward_s * batch / near.batch, near.backward_s * batch / near.batch
    return f, b, outside


def measured_points(ctx: Ctx) -> list[PhasePoint] | None:
    """The calibration's measured phase points of the job's model label (``None`` when the label
    is not calibrated, or was calibrated with another model config)."""
    cal, job = ctx.cal, ctx.job
    return cal.compute.get(job.model) if _same_model(cal, job.model, job.model_cfg) else None


def phases(ctx: Ctx, batch: float) -> tuple[float, float, float]:
    """The whole model's forward, backward and optimizer seconds of one step at ``batch`` samples
    on one rank: interpolated from the calibration's measured points of the job's model label;
    without them, from spec, the roofline per operation class where the profile gives its
    attainable fractions (:func:`roofline_phases`); else FLOPs / rate — forward = train_flops_per_sample / 3 per sample,
    backward twice that (Kaplan et al. 2020's 6N rule, as models.py counts), rate =
    ``compute_rates[precision]`` — and optimizer = parameters × ADAMW_BYTES_PER_PARAM / memory
    bandwidth."""
    job, cal = ctx.job, ctx.cal
    points = measured_points(ctx)
    if points:
        f, b, outside = _interpolate(points, batch)
        ctx.extrapolated |= outside
        if outside:
            ctx.note(f"batch {batch:g} outside the measured {sorted(p.batch for p in points)}")
        return f, b, sorted(p.optimizer_s for p in points)[len(points) // 2]
    info = model_info(job.model_cfg)
    precision = job.hardware_cfg.mfu_precision(job.dtype, "tf32")
    optimizer = info.params * ADAMW_BYTES_PER_PARAM / cal.memory_bandwidth if cal.memory_bandwidth else 0.0
    by_roofline = roofline_phases(ctx, batch, precision)
    if by_roofline is not None:
        return *by_roofline, optimizer
    rate = cal.compute_rates.get(precision)
    if not rate or not cal.memory_bandwidth:
        missing = f"compute_rates[{precision}]" if not rate else "memory_bandwidth"
        raise ValueError(
            f"calibration of {cal.hardware} ({cal.source}) has no measured compute for model {job.model!r} "
            f"and no {missing}: run `benchbench calibrate` for this model, or give the profile's specs"
        )
    ctx.note(f"compute from spec: {precision} at {rate / 1e12:.3g} TFLOP/s")
    fwd = info.train_flops_per_sample / 3 * batch / rate
    return fwd, 2 * fwd, optimizer


def roofline_phases(ctx: Ctx, batch: float, precision: str) -> tuple[float, float] | None:
    """Forward and backward seconds from the roofline (:mod:`~benchbench.costmodel.roofline`,
    :func:`roofline_device`), said in the prediction's terms; ``None`` where it does not apply."""
    job, cal = ctx.job, ctx.cal
    device = roofline_device(ctx, precision)
    if device is None:
        return None
    elt = 2 if job.dtype == "bf16" else FP32
    fp8 = job.plan.float8 and device.fp8_flops is not None
    f, b = model_seconds(job.model_cfg, batch, job.plan.tp, stream_bytes(job), elt, device, fp8)
    a = cal.attainable
    ctx.note(
        f"compute from spec, roofline: {precision} peak {device.peak_flops / 1e12:.4g} TFLOP/s × gemm "
        f"{a['gemm']:.3g}, attention {a['attention']:.3g}; HBM × {a['hbm']:.3g}"
    )
    if job.plan.float8:
        ctx.note(
            f"float8: block matmuls at fp8 {device.fp8_flops / 1e12:.4g} TFLOP/s peak, torchao's casts at HBM"
            if fp8
            else f"float8: no fp8 peak in the profile; matmuls predicted at {precision}"
        )
    return f, b


def roofline_device(ctx: Ctx, precision: str) -> Device | None:
    """The roofline's view of the device (:mod:`~benchbench.costmodel.roofline`) where it applies: a
    from-spec calibration with every attainable fraction, the precision's peak and a memory
    bandwidth, and a model whose operations the roofline knows; else ``None``."""
    cal, cfg = ctx.cal, ctx.job.model_cfg
    peak = cal.peak_flops.get(precision)
    if cal.source != FROM_SPEC or not peak or not cal.memory_bandwidth or not supported(cfg):
        return None
    if any(k not in cal.attainable for k in CLASSES):
        return None
    return Device(peak, cal.memory_bandwidth, dict(cal.attainable), cal.peak_flops.get("fp8"))


def recompute_share(job: Job, stages: list[int], n_stages: int) -> float:
    """Activation checkpointing's recompute on a rank holding pipeline ``stages``, as a share of
    the whole model's forward: each checkpointed block of its stages runs its forward again in
    backward (Chen et al. 2016; Korthikanti et al. 2023, §5: full recomputation costs one extra
    forward per layer), except its last matmul (gpt fc2: 2·t·4h·h per sequence), whose output no op of
    the block saves — torch's non-reentrant checkpoint stops recomputing once the last saved
    tensor is back (``set_checkpoint_early_stop``, on by default) — / tp. 0 without checkpointing."""
    plan, cfg = job.plan, job.model_cfg
    if plan.activation_checkpoint == "none" or cfg["arch"] not in ("gpt", "llama", "vit"):
        return 0.0
    layers = int(cfg["layers"])
    kept = set(checkpointed_blocks([str(i) for i in range(layers)], plan.activation_checkpoint, plan.ac_every))
    mine = sum(str(i) in kept for s in stages for i in stage_layers(layers, s, n_stages))
    first, block, head, last_matmul = block_flops(cfg)
    return mine * (block - last_matmul) / (first + layers * block + head) / plan.tp


def block_flops(cfg: dict[str, Any]) -> tuple[float, float, float, float]:
    """Forward FLOPs per sample: the first stage's extras, one block, the head, and the block's
    last matmul (gpt fc2 8·t·h², Llama w2 2·t·f·d, ViT fc2 2·T·m·h), which recompute skips."""
    tokens, h, _ = boundary(cfg)
    if cfg["arch"] == "gpt":
        block, head = gpt_layer_flops(cfg)
        return 0.0, block, head, 8.0 * tokens * h * h
    first, block, head = ARCHITECTURES[cfg["arch"]].stage_flops(**size_args(cfg))
    width = int(cfg["ffn_hidden" if cfg["arch"] == "llama" else "mlp_hidden"])
    return first, block, head, 2.0 * tokens * width * h


def stream_bytes(job: Job) -> int:
    """Bytes of one element of the residual stream between blocks (what a pipeline sends): 2 for
    bf16 jobs whose parameters FSDP2 gathers in bf16 (``MixedPrecisionPolicy(param_dtype=bf16)``
    over dp ≥ 2: the embedding's output and every residual sum stay bf16), else 4 — under bf16
    autocast alone the matmul outputs are bf16 but the residual sum with the fp32 embedding output
    promotes to fp32 (both measured: tests/test_predict.py, fsdp × pp records in fp32 and bf16)."""
    fsdp_cast = job.dtype == "bf16" and job.plan.dp_flavour == "fsdp" and job.plan.shard_size > 1
    return 2 if fsdp_cast else FP32


def memory_bandwidth(ctx: Ctx) -> float:
    """Bytes/s of the rank's memory: the spec figure, else what the measured optimizer step moves
    (parameters × ADAMW_BYTES_PER_PARAM / optimizer seconds: AdamW is memory-bound)."""
    if ctx.cal.memory_bandwidth:
        return ctx.cal.memory_bandwidth
    points = measured_points(ctx) or []
    optimizer_s = sorted(p.optimizer_s for p in points)[len(points) // 2] if points else 0.0
    if optimizer_s <= 0:
        raise ValueError(f"calibration of {ctx.cal.hardware}: no memory_bandwidth and no measured optimizer step")
    return model_info(ctx.job.model_cfg).params * ADAMW_BYTES_PER_PARAM / optimizer_s


def achieved_flops(ctx: Ctx) -> float:
    """FLOP/s the rank sustains on this model: training FLOPs of one sample / (forward + backward)
    at the job's per-rank batch (measured, or the spec rate)."""
    b = ctx.job.local_batch
    f, bw, _ = phases(ctx, b)
    return model_info(ctx.job.model_cfg).train_flops_per_sample * b / (f + bw)


def oversubscription(job: Job, cal: Calibration) -> float:
    """How much slower every rank runs because ranks share the CPU's cores: ranks × threads per
    rank / cores, when above 1 (the record's ``env.oversubscribed``); 1 on GPUs."""
    if job.hardware_cfg.device != "cpu" or not cal.cpu_count:
        return 1.0
    return max(1.0, job.world_size * job.threads_per_rank / cal.cpu_count)


def float8_factor(ctx: Ctx) -> float:
    """Compute-time factor of a float8 plan (:mod:`~benchbench.strategies.float8`): the blocks'
    dense matmuls (24·T·h² of each layer's forward FLOPs, models.py) run at the calibration's
    ``fp8`` rate instead of the job's precision; attention scores and the LM head (kept in high
    precision) do not: factor = 1 − s + s · rate_precision / rate_fp8, s the blocks' dense share
    of the training FLOPs. Without an fp8 rate (a profile without ``peak_flops.fp8``, a measured
    calibration) the factor is 1 and the prediction says so. torchao's casts and scale
    computations (memory-bound) are not modelled."""
    job = ctx.job
    if not job.plan.float8:
        return 1.0
    precision = job.hardware_cfg.mfu_precision(job.dtype, "tf32")
    if roofline_device(ctx, precision) is not None:
        return 1.0  # the roofline times the block matmuls at fp8 itself (roofline.model_seconds)
    fp8, base = ctx.cal.compute_rates.get("fp8"), ctx.cal.compute_rates.get(precision)
    if not fp8 or not base:
        ctx.note(f"float8: no fp8 compute rate in the calibration; matmuls predicted at {precision}")
        return 1.0
    c = job.model_cfg
    if c["arch"] != "gpt":
        ctx.note(f"float8: the fp8 share is derived for the gpt only; {c['arch']} matmuls predicted at {precision}")
        return 1.0
    t, h, layers = int(c["seq_len"]), int(c["hidden"]), int(c["layers"])
    dense = layers * 24 * t * h * h
    s = dense / (layers * (24 * t * h * h + 2 * t * t * h) + 2 * t * h * int(c["vocab"]))
    ctx.note(f"float8: block matmuls ({s:.0%} of FLOPs) at fp8 {fp8 / 1e12:.3g} TFLOP/s")
    return 1 - s + s * base / fp8
