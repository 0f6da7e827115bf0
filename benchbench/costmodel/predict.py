"""Predict a job's step time, throughput, memory and bubble from a calibration.

(To be filled: one formula per strategy, each next to the plan it models, citing its source.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Prediction:
    """The cost model's figures for one job (one configuration: model, hardware, plan, world size)."""

    model: str
    hardware: str
    strategy: str
    world_size: int
    dp: int
    tp: int
    pp: int
    global_batch: int
    source: str  # the calibration's: "measured" | "from spec"
    extrapolated: bool  # beyond what was calibrated: a larger group, or a batch outside the measured points
    compute_s: float  # the busiest rank's compute of one step (forward, backward, optimizer)
    comm_s: float  # every collective of one step on that rank, α-β time, summed
    exposed_comm_s: float  # the part of comm_s not hidden behind compute
    bubble_fraction: float | None  # pipeline plans: idle share of the step
    step_time_s: float
    samples_per_s: float
    model_state_bytes: float  # benchbench.memory.model_state_estimate
    activation_bytes: float | None  # benchbench.memory.activation_estimate
    memory_bytes: float  # model state + activations of the rank holding the most
    memory_limit_bytes: float | None  # the profile's memory_gb, bytes
    fits: bool | None  # memory_bytes <= memory_limit_bytes; None where the profile gives no memory
    infeasible: str | None  # why the plan cannot run (plan rules or memory), else None
    terms: str  # how step_time_s was composed, for people

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
