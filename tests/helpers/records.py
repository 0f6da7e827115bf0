"""Run records made by hand, without running anything."""

from __future__ import annotations

from benchbench.protocol.record import make_record
from tests.helpers.jobs import make_test_job


def rec(
    strategy: str,
    ws: int,
    step_time: float,
    batch: int = 64,
    loss: tuple[float, ...] = (2.0, 1.0),
    status: str = "ok",
    repeat: int = 0,
) -> dict:
    """A record of a hand-built job: every step takes ``step_time`` s; ``status`` other than "ok"
    gives a failed record with no steps."""
    job = make_test_job(strategy, ws, global_batch=batch, repeat=repeat, steps=len(loss))
    summary = {"step_time_median_s": step_time, "samples_per_s": batch / step_time, "step_time_cv": 0.0}
    ok = status == "ok"
    return make_record(
        job=job,
        status=status,
        error=None if ok else "boom",
        step_time_s=[step_time] * len(loss) if ok else [],
        loss=list(loss) if ok else [],
        summary=summary,
    )
