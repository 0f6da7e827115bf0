"""Pipeline schedules: one table from name to torch schedule class, stage layout and bubble.

Each entry names its ``torch.distributed.pipelining`` class, how a rank's stages are laid out
(one stage, looped ``r, r+p, …``, or V-shaped ``r, 2p−1−r``) and the schedule's theoretical bubble
with equal forward, input-gradient and weight-gradient times (p stages/ranks, m micro-batches,
v stages per rank). Whether a schedule drives several stages per rank is *derived* from its
torch class (:func:`benchbench.strategies.pipeline_parallel.is_multi_stage`: a
``PipelineScheduleMulti``); a test pins that the declared layouts agree. This module imports no
torch: the torch classes are looked up on the rank side (:mod:`benchbench.strategies.pipeline_parallel`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _gpipe_1f1b(p: int, m: int, v: int) -> float:
    return (p - 1) / (m + p - 1)


def _interleaved(p: int, m: int, v: int) -> float:
    return (p - 1) / (v * m + p - 1)


def _interleaved_zb(p: int, m: int, v: int) -> float:
    return (p - 1) / (3 * v * m + p - 1)


def _zbv(p: int, m: int, v: int) -> float | None:
    """ZB-V under this table's convention (equal F, I, W chunk times, free transfers): the last
    rank cannot start before p − 1 forward chunks have passed, and every rank is busy
    2 chunks × m × (F + I + W) = 6m, so the idle fraction is at least (p − 1)/(6m + p − 1) — torch's
    ``ScheduleZBVZeroBubble`` action lists, replayed with unit times, take exactly that
    (tests/test_measurement.py), as do DualPipeV's and interleaved zero-bubble's at v = 2. Qi et
    al.'s "zero bubble" leaves out this unavoidable fill; 0 here would rank ZB-V above DualPipeV in
    the report and the cost model for the same makespan. torch needs m ≥ 2p (else ``None``)."""
    return (p - 1) / (6 * m + p - 1) if m >= 2 * p else None


def _dualpipev(p: int, m: int, v: int) -> float | None:
    """DualPipeV's idle fraction under this table's convention (equal F, I, W chunk times; a full
    backward B = I + W; free transfers; torch runs an overlapped F&B pair one after the other).

    Derivation: torch's ``ScheduleDualPipeV`` action lists (2p stages, two per rank, V-shaped),
    replayed by :func:`benchbench.rank.measure.bubble.simulate` with unit durations, take 6m + (p − 1)
    chunk-times for every (p, m ≥ 2p) tried (p = 2…4, m = 2p…8p: tests/test_measurement.py pins it);
    each rank is busy 2 chunks × m × (F + I + W) = 6m, so the idle fraction is
    (p − 1)/(6m + p − 1). DeepSeek-V3's table (arXiv 2412.19437, Table 2; the DualPipe repository
    gives DualPipeV the same) counts the bubble as (PP/2 − 1)(F&B + B − 3W) with PP = 2p stages;
    with F&B = F + B = 3 and B = 2 that is 2(p − 1) chunk-times, twice what torch's action order
    needs. The table's count assumes its own (overlapped) F&B cost; this closed form is the one
    of torch's schedule and is the one used, so treat the paper's figure as an upper bound here.
    torch needs m ≥ 2p (its stage count): below that the schedule does not exist (``None``)."""
    return (p - 1) / (6 * m + p - 1) if m >= 2 * p else None


@dataclass(frozen=True)
class Schedule:
    """One pipeline schedule and the facts benchbench uses about it."""

    torch_class: str  # name in torch.distributed.pipelining
    layout: str  # "single" (one stage per rank), "looped" or "v"
    bubble: Callable[[int, int, int], float | None]  # (p, m, v) -> idle fraction of a step
    bubble_formula: str
    source: str
    splits_backward: bool = False  # runs separate input- and weight-gradient passes (I, W)

    @property
    def multi_stage(self) -> bool:
        return self.layout != "single"


SCHEDULES: dict[str, Schedule] = {
    "gpipe": Schedule("ScheduleGPipe", "single", _gpipe_1f1b, "(p−1)/(m+p−1)", "Huang et al., GPipe, 2019"),
    "1f1b": Schedule("Schedule1F1B", "single", _gpipe_1f1b, "(p−1)/(m+p−1)", "Narayanan et al., PipeDream-Flush, 2019"),
    "interleaved-1f1b": Schedule(
        "ScheduleInterleaved1F1B", "looped", _interleaved, "(p−1)/(v·m+p−1)", "Narayanan et al., SC 2021"
    ),
    "looped-bfs": Schedule(
        "ScheduleLoopedBFS", "looped", _interleaved, "(p−1)/(v·m+p−1)", "Lamy-Poirier, breadth-first PP, 2023"
    ),
    "interleaved-zb": Schedule(
        "ScheduleInterleavedZeroBubble",
        "looped",
        _interleaved_zb,
        "(p−1)/(3·v·m+p−1)",
        "Qi et al., ZB-H1, 2023",
        splits_backward=True,
    ),
    "zbv": Schedule(
        "ScheduleZBVZeroBubble",
        "v",
        _zbv,
        "(p−1)/(6m+p−1) for m ≥ 2p",
        "Qi et al., zero bubble V, 2023",
        splits_backward=True,
    ),
    "dualpipev": Schedule(
        "ScheduleDualPipeV",
        "v",
        _dualpipev,
        "(p−1)/(6m+p−1) for m ≥ 2p (F = I = W, F&B = F + B)",
        "DeepSeek-AI, DeepSeek-V3 technical report, arXiv 2412.19437, Table 2 (DualPipe); DualPipeV: "
        "github.com/deepseek-ai/DualPipe",
        splits_backward=True,
    ),
}


def stage_ids(name: str, pp_rank: int, pp: int, virtual_stages: int) -> list[int]:
    """The stage indices pipeline rank ``pp_rank`` holds under schedule ``name``."""
    if SCHEDULES[name].layout == "v":
        return [pp_rank, 2 * pp - 1 - pp_rank]
    return [pp_rank + k * pp for k in range(virtual_stages)]


def interleaved_warmup(rank: int, pp: int, m: int, v: int) -> int:
    """Forwards torch's ``ScheduleInterleaved1F1B`` runs on ``rank`` before its first backward
    (``_get_warmup_ops``): (v − 1)·(micro-batches per round) + 2·(p − 1 − rank), at most v·m; a
    round is m / max(1, m // p) micro-batches."""
    per_round = m // max(1, m // pp)
    return min((v - 1) * per_round + 2 * (pp - 1 - rank), m * v)


def compute_order(name: str, pp_rank: int, pp: int, m: int, v: int) -> list[tuple[int, bool]] | None:
    """The forwards and full backwards pipeline rank ``pp_rank`` runs, in torch's order, as
    (stage, is_forward) — what the rank holds saved in between (the micro-batch index does not
    matter to memory). GPipe: every forward, then every backward. 1F1B (``Schedule1F1B``):
    min(m, p − rank) forwards, then backward and forward in turn, then the backwards left.
    Interleaved 1F1B (``ScheduleInterleaved1F1B``, ``_get_1f1b_rank_ops``): the warm-up forwards of
    :func:`interleaved_warmup`, then forward and backward in turn, then the backwards left; a
    forward's stage cycles over the rank's v stages every round of micro-batches, a backward's
    from the last stage down. ``None`` for the schedules whose order is not derived here (those
    splitting the backward: their input-gradient pass frees part of a micro-batch)."""
    stages = stage_ids(name, pp_rank, pp, v)
    if name == "gpipe":
        return [(stages[0], True)] * m + [(stages[0], False)] * m
    if name == "1f1b":
        warm = min(m, pp - pp_rank)
        steady = [op for _ in range(m - warm) for op in ((stages[0], False), (stages[0], True))]
        return [(stages[0], True)] * warm + steady + [(stages[0], False)] * warm
    if name != "interleaved-1f1b":
        return None
    per_round, total = m // max(1, m // pp), m * v
    warm = interleaved_warmup(pp_rank, pp, m, v)
    fwd = [stages[(op // per_round) % v] for op in range(total)]
    bwd = [stages[v - 1 - ((op - warm) // per_round) % v] for op in range(warm, warm + total)]
    order = [(s, True) for s in fwd[:warm]]
    for k in range(total - warm):
        order += [(fwd[warm + k], True), (bwd[k], False)]
    return order + [(s, False) for s in bwd[total - warm :]]
