"""The ranks of ``benchbench calibrate``: ``python -m benchbench.rank.calibrate
--job-file SPEC --out OUT --err-dir D``, started by :func:`benchbench.launch.run_job.launch_ranks` like a
job's ranks, with :func:`benchbench.rank.main.main`'s heartbeat, error files and teardown.

In order, on every rank (definitions: docs/METRICS.md, "Calibration"):

1. the collective sweep: per group size n of the spec (the first n ranks, a ``new_group`` every
   rank creates), per collective, per size 1 KiB x 4^k up to ``max_bytes``: warm-up iterations,
   then timed ones, each after a barrier of the group; an iteration's time is the slowest rank's
   (MAX all-reduce after the loop, not timed); the median → a point; then the α-β fits;
2. compute, on rank 0 alone while the others wait at a barrier: each model's single-rank AdamW
   step at each batch, split into forward (+loss), backward and optimizer; matmul FLOP/s at the
   models' main GEMM shapes;
3. overlap, at the largest group: an all-reduce alone, a matmul loop of about its duration alone,
   and both at once;

then rank 0 writes the :class:`~benchbench.costmodel.calibration.Calibration` to ``--out``.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from benchbench.costmodel.calibrate import (
    ELEMENT_BYTES,
    CalibrationSpec,
    elements,
    fit_all,
    iterations,
    job_for,
    make_point,
    sweep_sizes,
)
from benchbench.costmodel.calibration import MEASURED, Calibration, CollectivePoint, PhasePoint, write_calibration
from benchbench.costmodel.collectives import COLLECTIVES
from benchbench.models.formulas import boundary
from benchbench.models.registry import make_task
from benchbench.protocol import heartbeat
from benchbench.rank.environment import collect, device_name
from benchbench.rank.main import join, leave
from benchbench.rank.main import main as rank_main
from benchbench.rank.reductions import gather_objects
from benchbench.rank.rendezvous import RankEnv
from benchbench.rank.train_step import autocast, build_trainer

PHASE_WARMUP = 2  # untimed training steps before the timed ones
PHASE_STEPS = (3, 10)  # timed training steps: at least, at most ...
PHASE_BUDGET_S = 2.0  # ... stopping past this much time per batch once the minimum is done
MATMUL_REPEATS = (3, 50)  # timed matmuls: at least, at most, stopping past MATMUL_BUDGET_S
MATMUL_BUDGET_S = 0.3
OVERLAP_BYTES = 4 * 1024**2  # the overlap probe's all-reduce (capped at the spec's max_bytes)
OVERLAP_REPEATS = 9  # rounds of the overlap probe (comm, compute, both in turn)
OVERLAP_TILE = 256  # the overlap probe's compute: square fp32 matmuls of this size
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
Op = Callable[[], Any]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _no_gc() -> Iterator[None]:
    """No collector pauses inside timed code."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _max_over(values: list[float], group: Any, device: torch.device) -> list[float]:
    """Each value's maximum over the ranks of ``group`` (no-op without a process group)."""
    if not dist.is_initialized():
        return values
    where = device if dist.get_backend(group) == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=where)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return t.cpu().tolist()


def _timed(op: Op, device: torch.device, before: Op | None = None) -> float:
    """Seconds of one ``op`` (device-synchronised), after ``before`` (untimed)."""
    if before is not None:
        before()
    _sync(device)
    t0 = time.perf_counter()
    op()
    _sync(device)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------- collectives


def _send_recv(t: torch.Tensor, rank: int, n: int) -> Op:
    """Ranks in pairs (0→1, 2→3, ...): the even one sends, the odd one receives; an odd one out idles."""
    if rank % 2 == 0 and rank + 1 < n:
        return lambda: dist.send(t, dst=rank + 1)
    if rank % 2 == 1:
        return lambda: dist.recv(t, src=rank - 1)
    return lambda: None


def collective_op(kind: str, n: int, size: int, rank: int, group: Any, device: torch.device) -> tuple[Op, int]:
    """One ``kind`` operation of nccl-tests size ``size`` over ``group`` (the first ``n`` ranks),
    and its payload in bytes: the input of all-reduce, broadcast, reduce-scatter and send, the
    whole output of all-gather (docs/METRICS.md)."""
    count = elements(kind, n, size)
    full = torch.zeros(count, device=device)
    part = torch.zeros(count // n, device=device) if kind in ("all_gather", "reduce_scatter") else full
    ops: dict[str, Op] = {
        "all_reduce": lambda: dist.all_reduce(full, group=group),
        "all_gather": lambda: dist.all_gather_into_tensor(full, part, group=group),
        "reduce_scatter": lambda: dist.reduce_scatter_tensor(part, full, group=group),
        "broadcast": lambda: dist.broadcast(full, src=0, group=group),
        "send": _send_recv(full, rank, n),
    }
    return ops[kind], count * ELEMENT_BYTES


def sweep_kind(
    kind: str, n: int, sizes: list[int], rank: int, group: Any, device: torch.device
) -> list[CollectivePoint]:
    """One collective at every size over ``group``: each size's warm-up iterations, then its timed
    ones (:func:`iterations`), each after a barrier of the group, in rounds — iteration i of every
    size runs in round i, so that a burst of load from elsewhere touches every size a little
    rather than one size wholly; then each iteration's slowest rank (one MAX all-reduce, after the
    timing) and each size's median."""
    ops = [collective_op(kind, n, size, rank, group, device) for size in sizes]
    counts = [iterations(size) for size in sizes]
    for (op, _), (warmup, _) in zip(ops, counts, strict=True):
        for _ in range(warmup):
            op()
    times: list[list[float]] = [[] for _ in sizes]
    with _no_gc():
        for r in range(max(timed for _, timed in counts)):
            for i, ((op, _), (_, timed)) in enumerate(zip(ops, counts, strict=True)):
                if r < timed:
                    times[i].append(_timed(op, device, lambda: dist.barrier(group=group)))
    slowest = iter(_max_over([t for ts in times for t in ts], group, device))
    medians = [statistics.median([next(slowest) for _ in ts]) for ts in times]
    return [make_point(kind, n, payload, t) for (_, payload), t in zip(ops, medians, strict=True)]


def sweep(spec: CalibrationSpec, rank: int, device: torch.device, groups: dict[int, Any]) -> list[CollectivePoint]:
    """Every collective at every size over every group (rank 0's list is the whole sweep; ranks
    outside a group wait for it at a barrier)."""
    points, sizes = [], sweep_sizes(spec.max_bytes)
    for n, group in groups.items():
        if rank < n:
            for kind in COLLECTIVES:
                points += sweep_kind(kind, n, sizes, rank, group, device)
        dist.barrier()
    return points


# ----------------------------------------------------------------------------------- compute


def _phase_step(trainer: Any, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[float, float, float]:
    """One AdamW training step as :class:`~benchbench.rank.train_step.Trainer` runs it, timed by phase:
    forward + loss, backward, optimizer step + zero_grad (device-synchronised)."""

    _sync(device)
    t0 = time.perf_counter()
    with autocast(device, trainer.autocast_dtype):
        out = trainer.model(x)
    loss = trainer.loss_fn(out, y)
    _sync(device)
    t1 = time.perf_counter()
    loss.backward()
    _sync(device)
    t2 = time.perf_counter()
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def phase_points(spec: CalibrationSpec, label: str, device: torch.device) -> tuple[list[PhasePoint], dict[str, float]]:
    """Median forward, backward and optimizer seconds of the model's single-rank step at each of
    its batches — one model and optimizer, the batches taking turns in rounds (so that a burst of
    load touches every batch alike): :data:`PHASE_WARMUP` untimed steps each, then
    :data:`PHASE_STEPS` rounds, stopping past :data:`PHASE_BUDGET_S` per batch once the minimum
    ran; and per batch the spread of its step times, (max − min) / median."""

    model_cfg, batches = spec.models[label].model_cfg, list(spec.models[label].batches)
    job = job_for(spec, 1, model_cfg, max(batches), label)
    task = make_task(model_cfg, job.seed)
    trainer = build_trainer(job, device, task.loss_fn)
    data = [tuple(t.to(device) for t in task.batch(0, b)) for b in batches]
    for x, y in data:
        for _ in range(PHASE_WARMUP):
            _phase_step(trainer, x, y, device)
    (lo, hi), rows, start = PHASE_STEPS, [[] for _ in batches], time.perf_counter()
    with _no_gc():
        for r in range(hi):
            for (x, y), row in zip(data, rows, strict=True):
                row.append(_phase_step(trainer, x, y, device))
            if r + 1 >= lo and time.perf_counter() - start > PHASE_BUDGET_S * len(batches):
                break
    points = [
        PhasePoint(b, *(statistics.median(t[i] for t in row) for i in range(3)))
        for b, row in zip(batches, rows, strict=True)
    ]
    totals = [[sum(t) for t in row] for row in rows]
    return points, {str(b): (max(t) - min(t)) / statistics.median(t) for b, t in zip(batches, totals, strict=True)}


def gemm_shape(model_cfg: dict[str, Any], batch: int) -> tuple[int, int, int]:
    """(m, n, k) of the model's main GEMM at ``batch``: the MLP's hidden layer (batch x width x
    width), the GPT's first feed-forward matmul (tokens x 4·hidden x hidden), a Llama's w1 (tokens
    x ffn_hidden x hidden), a ViT's fc1 (tokens x mlp_hidden x hidden); for a custom model, whose
    shapes are its own, a stand-in square one (batch x 1024 x 1024)."""
    arch = model_cfg["arch"]
    if arch == "gpt":
        return batch * int(model_cfg["seq_len"]), 4 * int(model_cfg["hidden"]), int(model_cfg["hidden"])
    if arch in ("llama", "vit"):
        tokens, hidden, _ = boundary(model_cfg)
        return batch * tokens, int(model_cfg["ffn_hidden" if arch == "llama" else "mlp_hidden"]), hidden
    if arch == "mlp":
        return batch, int(model_cfg["width"]), int(model_cfg["width"])
    return batch, 1024, 1024


def matmul_rate(m: int, n: int, k: int, dtype: str, device: torch.device) -> float:
    """Achieved FLOP/s of an (m x k) @ (k x n) matmul in ``dtype``: 2·m·n·k / median time."""
    a = torch.randn(m, k, device=device, dtype=DTYPES[dtype])
    b = torch.randn(k, n, device=device, dtype=DTYPES[dtype])
    for _ in range(2):
        a @ b
    lo, hi = MATMUL_REPEATS
    times, start = [], time.perf_counter()
    with _no_gc():
        while len(times) < hi and (len(times) < lo or time.perf_counter() - start < MATMUL_BUDGET_S):
            times.append(_timed(lambda: a @ b, device))
    return 2.0 * m * n * k / statistics.median(times)


def compute(spec: CalibrationSpec, device: torch.device) -> tuple[dict[str, list[PhasePoint]], list[dict], dict]:
    """Every model's phase points, the matmul rates at their shapes (one row per distinct shape),
    and the phase points' spreads (model -> batch -> spread)."""
    phases: dict[str, list[PhasePoint]] = {}
    spreads: dict[str, dict[str, float]] = {}
    rows: dict[tuple[int, int, int], dict[str, Any]] = {}
    for label, m in spec.models.items():
        phases[label], spreads[label] = phase_points(spec, label, device)
        for b in m.batches:
            mm, n, k = gemm_shape(m.model_cfg, b)
            if (mm, n, k) not in rows:
                rate = matmul_rate(mm, n, k, spec.dtype, device)
                rows[mm, n, k] = {
                    "m": mm,
                    "n": n,
                    "k": k,
                    "dtype": spec.dtype,
                    "flops_per_s": rate,
                    "model": label,
                    "batch": b,
                }
    return phases, list(rows.values()), spreads


# ----------------------------------------------------------------------------------- overlap


def interleaved(ops: list[Op], group: Any, device: torch.device, rounds: int) -> list[float]:
    """Per op, the median over ``rounds`` of the slowest rank's time, the ops taking turns within
    each round (each after a barrier; one untimed run of each first): variants compared in one
    process, interleaved, not one after the other (timings drift; /work/shared/FACTS.md)."""
    for op in ops:
        op()
    with _no_gc():
        times = [_timed(op, device, lambda: dist.barrier(group=group)) for _ in range(rounds) for op in ops]
    slowest = _max_over(times, group, device)
    return [statistics.median(slowest[i :: len(ops)]) for i in range(len(ops))]


def overlap(spec: CalibrationSpec, device: torch.device, n: int, group: Any) -> tuple[float, dict[str, float]]:
    """The share of an all-reduce hidden behind concurrent compute at group size ``n``:
    clip((t_c + t_m − t_b) / min(t_c, t_m), 0, 1) (docs/METRICS.md) and its three times. The compute
    is a loop of fp32 matmuls sized to last about as long as the all-reduce alone."""
    size = min(OVERLAP_BYTES, spec.max_bytes)
    buf = torch.zeros(size // ELEMENT_BYTES, device=device)
    a = torch.randn(OVERLAP_TILE, OVERLAP_TILE, device=device)

    def comm() -> None:
        dist.all_reduce(buf, group=group)

    def matmuls(reps: int) -> None:
        for _ in range(reps):
            a @ a

    t_c, t_eight = interleaved([comm, lambda: matmuls(8)], group, device, OVERLAP_REPEATS)
    reps = max(1, round(8 * t_c / t_eight))

    def both() -> None:
        work = dist.all_reduce(buf, group=group, async_op=True)
        matmuls(reps)
        work.wait()

    t_c, t_m, t_b = interleaved([comm, lambda: matmuls(reps), both], group, device, OVERLAP_REPEATS)
    share = min(max((t_c + t_m - t_b) / min(t_c, t_m), 0.0), 1.0)
    return share, {"comm": t_c, "compute": t_m, "both": t_b, "payload_bytes": float(size), "group_size": float(n)}


# ---------------------------------------------------------------------------------- the rank


def _provenance(spec: CalibrationSpec, env: RankEnv, device: torch.device) -> tuple[dict[str, Any], list[str]]:
    """The record-like ``env`` and every rank's host, in rank order."""

    where = gather_objects((socket.gethostname(), device_name(device.type, device.index)))
    env_out = collect(
        backend=spec.hardware_cfg.backend if dist.is_initialized() else None,
        device_type=device.type,
        device_names=sorted({d for _, d in where}),
        hosts=sorted({h for h, _ in where}),
        ranks=env.world_size,
        threads=spec.threads_per_rank,
        launcher=env.launcher,
    )
    return env_out, [h for h, _ in where]


def measure(spec: CalibrationSpec, env: RankEnv, device: torch.device) -> Calibration | None:
    """Sweep, fits, compute and overlap (module docstring); the calibration on rank 0, else ``None``."""
    provenance, hosts = _provenance(spec, env, device)
    groups = {n: dist.new_group(list(range(n))) for n in spec.group_sizes}  # every rank, in order
    heartbeat.phase("collectives")
    points = sweep(spec, env.rank, device, groups) if groups else []
    heartbeat.phase("compute")
    phases, matmul, spreads = compute(spec, device) if env.rank == 0 else ({}, [], {})
    if dist.is_initialized():
        dist.barrier()  # the others wait: compute is measured alone
    heartbeat.phase("overlap")
    largest = max(groups, default=0)
    share, detail = overlap(spec, device, largest, groups[largest]) if env.rank < largest else (0.0, {})
    if env.rank != 0:
        return None
    levels = {n: "inter" if len(set(hosts[:n])) > 1 else "intra" for n in groups}
    extra = {"overlap_s": detail, "compute_spread": spreads, "max_bytes": spec.max_bytes}
    return Calibration(
        hardware=spec.hardware,
        source=MEASURED,
        threads_per_rank=spec.threads_per_rank,
        cpu_count=os.cpu_count(),
        device=device.type,
        collectives=fit_all(points, levels),
        points=points,
        compute=phases,
        model_cfgs={k: m.model_cfg for k, m in spec.models.items()},
        matmul=matmul,
        overlap=share,
        env={**provenance, **extra},
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def calibrate_rank(spec_file: Path, out: Path, env: RankEnv) -> None:
    """One calibration rank: device and threads, the process group, :func:`measure`; rank 0 writes
    the calibration to ``out``."""

    spec = CalibrationSpec.from_dict(json.loads(spec_file.read_text()))
    device = join(job_for(spec, spec.world_size), env)
    cal = measure(spec, env, device)
    if cal is not None:
        write_calibration(cal, out)
    leave()


def main(argv: list[str] | None = None) -> int:

    return rank_main(argv, body=calibrate_rank)


if __name__ == "__main__":
    sys.exit(main())
