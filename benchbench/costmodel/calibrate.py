"""``benchbench calibrate``: what a calibration measures, shared by the parent and the ranks (no
torch, no launcher).

:func:`spec_for_jobs` turns a study's jobs on a hardware profile into the spec of one calibration
(:class:`CalibrationSpec`: the world size, group sizes, models and per-rank batches the jobs use;
``benchbench.study.calibration_spec`` expands the study for it); the sweep's sizes and iteration
counts (:func:`sweep_sizes`, :func:`iterations`), the nccl-tests columns of a point
(:func:`make_point`), the α-β fit (:func:`fit_collective`) and the table
(:func:`format_calibration`). The ranks (:mod:`benchbench.rank.calibrate`) measure with these;
:mod:`benchbench.costmodel.run_calibration` starts them. Definitions: docs/METRICS.md, "Calibration".
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from benchbench.costmodel.calibration import (
    Calibration,
    CollectiveFit,
    CollectivePoint,
)
from benchbench.costmodel.collectives import LATENCY_STEPS, algbw, bus_bytes, busbw
from benchbench.spec.hardware import HardwareProfile, load_hardware
from benchbench.spec.job import Job
from benchbench.spec.plan import resolve_plan

DEFAULT_MAX_BYTES = 256 * 1024**2  # the study's calibration_max_bytes default (config schema)
MIN_BYTES = 1024  # the sweep's first size; each next one is 4x
LATENCY_BOUND_FACTOR = 100.0  # B of a sweep that shows no bandwidth term: this x the best busbw seen
ELEMENT_BYTES = 4  # the sweep's tensors are fp32 (gradients are, under bf16 autocast too)


# ------------------------------------------------------------------------------------ the spec

#: The keys every calibration spec's JSON has (``study`` and ``optimizer`` may be left out).
SPEC_KEYS = (
    "hardware",
    "hardware_cfg",
    "world_size",
    "group_sizes",
    "models",
    "threads_per_rank",
    "dtype",
    "seed",
    "max_bytes",
    "timeout_s",
)


@dataclass(frozen=True)
class ModelToCalibrate:
    """One model of a calibration: its config (without ``batch_size``) and the per-rank batches its
    single-rank training step is timed at."""

    model_cfg: dict[str, Any]
    batches: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"model_cfg": …, "batches": [...]}``."""
        return {"model_cfg": copy.deepcopy(self.model_cfg), "batches": list(self.batches)}

    @classmethod
    def from_dict(cls, label: str, d: dict[str, Any]) -> ModelToCalibrate:
        """The model ``label`` of a spec's JSON; ``ValueError`` where it has no ``model_cfg``."""
        if not isinstance(d, dict) or not isinstance(d.get("model_cfg"), dict):
            raise ValueError(f"calibration spec: model {label!r} needs a model_cfg object, got {d!r}")
        return cls(model_cfg=copy.deepcopy(d["model_cfg"]), batches=tuple(int(b) for b in d.get("batches") or ()))


@dataclass(frozen=True)
class CalibrationSpec:
    """What one calibration measures, made from a study's jobs on a hardware profile
    (:func:`spec_for_jobs`; ``benchbench.study.calibration_spec``): the launch (world size, threads
    per rank, timeout), the collective sweep (group sizes, ``max_bytes``), the models and batches
    whose phases are timed. Its JSON (:meth:`to_dict`, :meth:`from_dict`) is the workflow's
    calibrate param, ``benchbench calibrate --spec`` and the ranks' job file."""

    hardware: str
    hardware_cfg: HardwareProfile
    world_size: int
    group_sizes: tuple[int, ...]
    models: dict[str, ModelToCalibrate]
    threads_per_rank: int
    dtype: str
    seed: int
    max_bytes: int
    timeout_s: float
    study: str | None = None  # None: the job carrying it is named "calibration"
    optimizer: dict[str, Any] | None = None  # None: the compute calibration's AdamW at lr 1e-3

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, keys in this order: ``study`` (where set), :data:`SPEC_KEYS` with
        ``optimizer`` (where set) before ``max_bytes``; ``from_dict(d).to_dict() == d``."""
        out: dict[str, Any] = {} if self.study is None else {"study": self.study}
        out |= {
            "hardware": self.hardware,
            "hardware_cfg": self.hardware_cfg.to_dict(),
            "world_size": self.world_size,
            "group_sizes": list(self.group_sizes),
            "models": {label: m.to_dict() for label, m in self.models.items()},
            "threads_per_rank": self.threads_per_rank,
            "dtype": self.dtype,
            "seed": self.seed,
        }
        out |= {} if self.optimizer is None else {"optimizer": copy.deepcopy(self.optimizer)}
        return out | {"max_bytes": self.max_bytes, "timeout_s": self.timeout_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrationSpec:
        """The spec of its JSON form; ``ValueError`` naming the missing keys or the bad entry."""
        if not isinstance(d, dict):
            raise ValueError(
                f"calibration spec: a JSON object, got {type(d).__name__}; a spec is what calibration_spec returns"
            )
        missing = [k for k in SPEC_KEYS if k not in d]
        if missing:
            raise ValueError(f"calibration spec: missing keys {missing}; a spec is what calibration_spec returns")
        try:
            hardware_cfg = HardwareProfile.from_dict(d["hardware_cfg"])
        except TypeError as e:
            raise ValueError(f"calibration spec: hardware_cfg: {e}") from None
        return cls(
            hardware=str(d["hardware"]),
            hardware_cfg=hardware_cfg,
            world_size=int(d["world_size"]),
            group_sizes=tuple(int(n) for n in d["group_sizes"]),
            models={label: ModelToCalibrate.from_dict(label, m) for label, m in d["models"].items()},
            threads_per_rank=int(d["threads_per_rank"]),
            dtype=str(d["dtype"]),
            seed=int(d["seed"]),
            max_bytes=int(d["max_bytes"]),
            timeout_s=float(d["timeout_s"]),
            study=d.get("study"),
            optimizer=copy.deepcopy(d.get("optimizer")),
        )


def _micro_batches(job: Job) -> int:
    """Samples one rank feeds through forward/backward at a time: the data-parallel shard split
    into accumulation steps, or into the pipeline's micro-batches."""
    split = job.plan.micro_batches if job.pp > 1 else job.plan.accum_steps
    return max(job.global_batch // max(job.dp, 1) // max(split, 1), 1)


def spec_for_jobs(
    study_cfg: dict[str, Any], hardware: str, jobs: list[Job], every_divisor: bool = False
) -> CalibrationSpec:
    """What to calibrate for ``hardware`` so that the cost model can predict ``jobs`` (the
    validated study ``study_cfg``'s jobs on it; docs/METRICS.md, "Calibration"): their largest
    world size, every group size > 1 they use (with ``every_divisor``, also each divisor > 1 of
    the study's world sizes: a plan the cost model may choose), each model at its per-rank batches
    and its batch_size. Raises ``ValueError`` when ``jobs`` is empty."""
    if not jobs:
        raise ValueError(f"study {study_cfg['study']!r} runs no job on hardware {hardware!r}")
    groups = {n for j in jobs for n in (j.dp, j.tp, j.pp, j.world_size) if n > 1}
    if every_divisor:
        groups |= {d for ws in study_cfg["world_sizes"] for d in range(2, ws + 1) if ws % d == 0}
    models: dict[str, ModelToCalibrate] = {}
    for label, cfg in study_cfg["models"].items():
        mine = [j for j in jobs if j.model == label]
        if mine:
            batch = int(cfg.get("batch_size", study_cfg["batch_size"]))
            batches = {_micro_batches(j) for j in mine} | {batch}
            models[label] = ModelToCalibrate(model_cfg=dict(mine[0].model_cfg), batches=tuple(sorted(batches)))
    return CalibrationSpec(
        study=study_cfg["study"],
        hardware=hardware,
        hardware_cfg=load_hardware(hardware),
        world_size=max(j.world_size for j in jobs),
        group_sizes=tuple(sorted(groups)),
        models=models,
        threads_per_rank=int(study_cfg["threads_per_rank"]),
        dtype=study_cfg["dtype"],
        seed=int(study_cfg["seed"]),
        optimizer=dict(study_cfg["optimizer"]),
        max_bytes=int(study_cfg.get("calibration_max_bytes", DEFAULT_MAX_BYTES)),
        timeout_s=float(study_cfg["timeout_s"]),
    )


def check_spec(spec: CalibrationSpec) -> None:
    """``ValueError`` naming what is wrong with a calibration spec, before any rank starts."""
    ws, groups = spec.world_size, list(spec.group_sizes)
    bad = [n for n in groups if not 2 <= n <= ws]
    if ws < 1 or bad:
        raise ValueError(f"calibration spec: group sizes {bad} outside 2..world_size ({ws})")
    if spec.max_bytes < MIN_BYTES:
        raise ValueError(f"calibration spec: max_bytes {spec.max_bytes} < {MIN_BYTES}")
    if spec.timeout_s <= 0 or spec.threads_per_rank < 1:
        raise ValueError("calibration spec: timeout_s must be > 0 and threads_per_rank >= 1")
    for label, m in spec.models.items():
        if not m.batches or min(m.batches) < 1:
            raise ValueError(f"calibration spec: model {label!r} needs batches >= 1, got {list(m.batches)}")


def job_for(
    spec: CalibrationSpec,
    world_size: int,
    model_cfg: dict[str, Any] | None = None,
    batch: int = 1,
    label: str = "calibration",
) -> Job:
    """The :class:`~benchbench.spec.job.Job` that carries a calibration through the jobs' machinery:
    ``world_size`` ranks in one data-parallel group (the launcher's view), or, with a model, the
    single-process job whose training step the compute calibration times (AdamW, the study's lr)."""
    plan = resolve_plan("single" if world_size == 1 else "ddp", world_size)
    cfg = dict(model_cfg or {})
    return Job(
        study=spec.study if spec.study is not None else "calibration",
        model=label,
        model_cfg=cfg,
        hardware=spec.hardware,
        hardware_cfg=spec.hardware_cfg,
        strategy="calibrate",
        plan=plan,
        world_size=world_size,
        global_batch=batch,
        seq_len=int(cfg["seq_len"]) if "seq_len" in cfg else None,
        dtype=spec.dtype,
        steps=1,
        warmup_steps=0,
        seed=spec.seed,
        repeat=0,
        threads_per_rank=spec.threads_per_rank,
        scaling="strong",
        timeout_s=spec.timeout_s,
        optimizer=dict(spec.optimizer or {"lr": 1e-3}),
        loss_tolerance=0.0,
    )


# ------------------------------------------------------------------------------- the sweep


def sweep_sizes(max_bytes: int) -> list[int]:
    """1 KiB, 4 KiB, 16 KiB, ... up to ``max_bytes`` (each 4x the last)."""
    sizes, s = [], MIN_BYTES
    while s <= max_bytes:
        sizes.append(s)
        s *= 4
    return sizes


def iterations(size: int) -> tuple[int, int]:
    """(warm-up, timed) iterations at ``size`` bytes: fewer as operations grow, so that a sweep to
    256 MiB stays short (about 30 s for five collectives at 2 ranks on gloo here) while small
    sizes, whose times are bimodal on a shared CPU (a rank's wake-up delayed by a few ms), get
    enough samples for a stable median."""
    if size <= 64 * 1024:
        return 5, 50
    if size <= 1024**2:
        return 3, 20
    if size <= 16 * 1024**2:
        return 2, 7
    return 1, 3


def elements(kind: str, n: int, size: int) -> int:
    """fp32 elements of the operation's nccl-tests size: a multiple of ``n`` where the tensor is
    split over the ranks (all-gather, reduce-scatter), so the payload may fall just short of ``size``."""
    count = max(size // ELEMENT_BYTES, 1)
    return max(count // n, 1) * n if kind in ("all_gather", "reduce_scatter") else count


def make_point(kind: str, n: int, payload: float, seconds: float) -> CollectivePoint:
    """One sweep row with nccl-tests' columns: algbw = size / time, busbw = algbw x bus factor."""
    return CollectivePoint(kind, n, float(payload), seconds, algbw(payload, seconds), busbw(kind, n, payload, seconds))


def fit_collective(points: Iterable[CollectivePoint], level: str = "intra") -> CollectiveFit:
    """α and bus bandwidth B of ``t = α · LATENCY_STEPS[kind](n) + bus_bytes / B`` for the points of
    one (kind, n), by non-negative least squares on the relative error (each row divided by its
    time, so 1 KiB and 256 MiB weigh alike). When the fit leaves no bandwidth term (every point
    latency-bound: a sweep too short to show the bandwidth), B is :data:`LATENCY_BOUND_FACTOR` x
    the best busbw seen, a lower bound that keeps the bandwidth term under 1 % of every point."""
    import numpy as np
    from scipy.optimize import nnls

    pts = list(points)
    kind, n = pts[0].kind, pts[0].group_size
    if any((p.kind, p.group_size) != (kind, n) for p in pts):
        raise ValueError("fit_collective: points of one kind and group size only")
    t = np.array([p.time_s for p in pts])
    a = np.array([[LATENCY_STEPS[kind](n), bus_bytes(kind, n, p.payload_bytes)] for p in pts])
    (alpha, inv_b), _ = nnls(a / t[:, None], np.ones(len(pts)))
    bandwidth = 1.0 / inv_b if inv_b > 0 else LATENCY_BOUND_FACTOR * max(p.busbw for p in pts)
    return CollectiveFit(kind, n, float(alpha), float(bandwidth), level, "measured")


def fit_all(points: list[CollectivePoint], levels: dict[int, str]) -> list[CollectiveFit]:
    """One fit per (kind, group size) of the sweep; ``levels``: group size -> ``intra``/``inter``."""
    keys = sorted({(p.kind, p.group_size) for p in points})
    return [fit_collective([p for p in points if (p.kind, p.group_size) == k], levels.get(k[1], "intra")) for k in keys]


# ----------------------------------------------------------------------------- the table


def _si(x: float, unit: str) -> str:
    return f"{x / 1e9:.3f} G{unit}" if x >= 1e9 else f"{x / 1e6:.3f} M{unit}"


def _sweep_lines(cal: Calibration) -> list[str]:
    lines = []
    for fit in sorted(cal.collectives, key=lambda f: (f.group_size, f.kind)):
        pts = [p for p in cal.points if (p.kind, p.group_size) == (fit.kind, fit.group_size)]
        lines.append(f"# {fit.kind}  n={fit.group_size}  ({fit.level})")
        lines.append(f"#{'size (B)':>12} {'time (us)':>12} {'algbw (GB/s)':>13} {'busbw (GB/s)':>13} {'fit (us)':>10}")
        for p in sorted(pts, key=lambda p: p.payload_bytes):
            model = fit.time(fit.group_size, p.payload_bytes)
            lines.append(
                f" {p.payload_bytes:12.0f} {p.time_s * 1e6:12.1f} {p.algbw / 1e9:13.4f} "
                f"{p.busbw / 1e9:13.4f} {model * 1e6:10.1f}"
            )
        err = max((abs(fit.time(fit.group_size, p.payload_bytes) / p.time_s - 1) for p in pts), default=0.0)
        lines.append(
            f"# fit: alpha {fit.alpha_s * 1e6:.2f} us x {LATENCY_STEPS[fit.kind](fit.group_size):g} "
            f"steps, B {fit.bus_bandwidth / 1e9:.3f} GB/s; worst point off by {err:.0%}"
        )
    return lines


def format_calibration(cal: Calibration) -> str:
    """An nccl-tests-like table of the sweep with each fit, then compute, matmul and overlap."""
    lines = [
        f"# calibration of {cal.hardware} ({cal.source}, {cal.device}, {cal.threads_per_rank} thread(s) "
        f"per rank, {cal.cpu_count} CPUs)",
        *_sweep_lines(cal),
    ]
    spread = cal.env.get("compute_spread") or {}
    for label, pts in cal.compute.items():
        lines.append(f"# compute {label}: batch  forward  backward  optimizer (ms)  spread")
        lines += [
            f" {p.batch:8d} {p.forward_s * 1e3:9.2f} {p.backward_s * 1e3:9.2f} {p.optimizer_s * 1e3:10.2f}"
            f" {spread.get(label, {}).get(str(p.batch), float('nan')):8.0%}"
            for p in pts
        ]
    for row in cal.matmul:
        lines.append(f"# matmul {row['m']}x{row['n']}x{row['k']} {row['dtype']}: {_si(row['flops_per_s'], 'FLOP/s')}")
    detail = cal.env.get("overlap_s") or {}
    if detail:
        ms = {k: f"{detail[k] * 1e3:.1f} ms" for k in ("comm", "compute", "both")}
        lines.append(
            f"# overlap {cal.overlap:.2f} (all-reduce of {detail['payload_bytes']:.0f} B over "
            f"{detail['group_size']:.0f} ranks: alone {ms['comm']}, compute alone {ms['compute']}, "
            f"both {ms['both']})"
        )
    if "wall_time_s" in cal.env:
        load = cal.env.get("load_average") or {}
        lines.append(
            f"# took {cal.env['wall_time_s']:.1f} s; host load average {load.get('before', 0):.1f} before, "
            f"{load.get('after', 0):.1f} after ({cal.cpu_count} CPUs)"
        )
    return "\n".join(lines)
