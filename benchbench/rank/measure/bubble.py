"""The pipeline bubble, measured from a compute timeline and simulated from the same durations.

Method (docs/METRICS.md, "Pipeline bubble"): in extra, untimed steps after the timed ones, every
stage's compute calls — ``forward_one_chunk``, ``backward_one_chunk`` (full ``B`` or input-grad
``I``), ``backward_weight_one_chunk`` (``W``) and the schedule's loss (``L``) — are timed on each
rank, in the order the schedule runs them. Per step and rank:

* ``busy`` = the sum of those durations;
* measured bubble = 1 − busy / global wall, where the global wall is the slowest rank's
  ``schedule.step`` (all ranks start it after a barrier); everything that is not stage compute
  — waiting for a neighbour, point-to-point transfers, the schedule's own Python — counts as
  bubble;
* simulated bubble = 1 − busy / makespan of the same actions, in the same per-rank order, with
  the same measured durations, free transfers and no schedule overhead: what the schedule would
  idle given this stage imbalance and micro-batch jitter. The closed form (p−1)/(m+p−1) assumes
  equal stages and free transfers; on a CPU the simulated value is the fair comparison
  (/work/shared/FACTS.md: measured sits above the closed form for reasons the simulation names).

The figures are the mean over ranks of each step's value, then the median over steps.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any

import torch

#: Action = (kind, stage index, micro-batch index; -1 where the call does not say), duration s
Action = tuple[str, int, int, float]


@dataclass
class StageTimeline:
    """Timed compute actions of this rank's stages, in execution order, for the current step."""

    actions: list[Action] = field(default_factory=list)
    cuda: bool = False  # synchronise the device around each action (kernels run asynchronously)

    def wrap(self, fn: Any, kind: str, stage: int) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            if self.cuda:
                torch.cuda.synchronize()
            k = kind if kind != "B" or kwargs.get("full_backward", True) else "I"
            mb = (
                args[0]
                if args and isinstance(args[0], int)
                else kwargs.get("fwd_chunk_id", kwargs.get("bwd_chunk_id", -1))
            )
            self.actions.append((k, stage, int(mb), time.perf_counter() - t0))
            return out

        return timed


def instrument(schedule: Any, device: torch.device) -> StageTimeline:
    """Time the compute calls of ``schedule``'s stages on this rank (instance attributes: the
    schedule object is this job's alone)."""
    timeline = StageTimeline(cuda=device.type == "cuda")
    stages = getattr(schedule, "_stages", None) or [schedule._stage]
    for st in stages:
        st.forward_one_chunk = timeline.wrap(st.forward_one_chunk, "F", st.stage_index)
        st.backward_one_chunk = timeline.wrap(st.backward_one_chunk, "B", st.stage_index)
        st.backward_weight_one_chunk = timeline.wrap(st.backward_weight_one_chunk, "W", st.stage_index)
    last = max(st.stage_index for st in stages)
    schedule._compute_loss = timeline.wrap(schedule._compute_loss, "L", last)
    return timeline


def _deps(kind: str, stage: int, mb: int, n_stages: int) -> list[tuple[str, int, int]]:
    """Cross-stage predecessors of an action (same-stage order is the rank's own order)."""
    if kind == "F" and stage > 0:
        return [("F", stage - 1, mb)]
    if kind in ("B", "I") and stage < n_stages - 1:
        return [("B", stage + 1, mb), ("I", stage + 1, mb)]  # whichever the next stage ran
    return []


def simulate(per_rank: list[list[Action]], n_stages: int) -> float | None:
    """Makespan of every rank's actions in their order, each starting when its rank is free and
    its predecessors on other stages are done (transfers free). ``None`` if the orders deadlock."""
    done: dict[tuple[str, int, int], float] = {}
    clock = [0.0] * len(per_rank)
    pos = [0] * len(per_rank)
    remaining = sum(map(len, per_rank))
    while remaining:
        progressed = False
        for r, acts in enumerate(per_rank):
            while pos[r] < len(acts):
                kind, stage, mb, dur = acts[pos[r]]
                deps = _deps(kind, stage, mb, n_stages)
                if deps and not any(d in done for d in deps):
                    break
                start = max([clock[r], *(done[d] for d in deps if d in done)])
                clock[r] = done[(kind, stage, mb)] = start + dur
                pos[r], remaining, progressed = pos[r] + 1, remaining - 1, True
        if not progressed:
            return None
    return max(clock)


def step_bubbles(per_rank: list[list[Action]], walls: list[float], n_stages: int) -> tuple[float, float | None]:
    """One step's (measured, simulated) bubble: mean over ranks (module docstring)."""
    busy = [sum(a[3] for a in acts) for acts in per_rank]
    wall = max(walls)
    measured = sum(1 - b / wall for b in busy) / len(busy)
    makespan = simulate(per_rank, n_stages)
    simulated = sum(1 - b / makespan for b in busy) / len(busy) if makespan else None
    return measured, simulated
