"""The job: everything one benchmark run needs, typed, in one frozen dataclass.

A study expands into jobs (:func:`make_job`, one per combination, or a :class:`Dropped` with its
reason); a job travels to its ranks as JSON
(:meth:`Job.to_dict`) and comes back inside its run record (``record["job"]``,
:meth:`Job.from_dict`). The study's defaults live in ``workflow/schemas/config.schema.yaml``; a
job has every field filled, so no reader re-types a default. The mesh sizes (``dp``, ``tp``,
``pp``) and micro-batches belong to the plan and are read through it.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from benchbench.spec.gpu_features import device_reason
from benchbench.spec.hardware import HardwareProfile, load_hardware
from benchbench.spec.plan import Plan, infeasible_reason, resolve_plan


@dataclass(frozen=True)
class Job:
    """One benchmark job: a model trained with a plan on a world size, for some steps."""

    study: str
    model: str  # the study's label for the model
    model_cfg: dict[str, Any]  # arch and its size settings (no batch size)
    hardware: str  # hardware profile name
    hardware_cfg: HardwareProfile
    strategy: str  # preset or study-defined strategy name
    plan: Plan  # the strategy resolved at this world size
    world_size: int
    global_batch: int  # samples per optimizer step, over all data-parallel ranks
    seq_len: int | None  # tokens per sample for sequence models, else None
    dtype: str  # "fp32" or "bf16" (autocast)
    steps: int  # timed steps
    warmup_steps: int  # untimed steps before them
    seed: int  # model initialisation and data
    repeat: int  # index of this repeat of the configuration
    threads_per_rank: int
    scaling: str  # "strong" or "weak"
    timeout_s: float  # the whole job is killed after this long
    optimizer: dict[str, float]  # {"lr": ...}
    loss_tolerance: float  # largest loss deviation from `single` that counts as a match

    @property
    def id(self) -> str:
        """Stable, readable id: ``model__hardware__strategy__wsN__rK``."""
        return f"{self.model}__{self.hardware}__{self.strategy}__ws{self.world_size}__r{self.repeat}"

    @property
    def dp(self) -> int:
        return self.plan.dp

    @property
    def tp(self) -> int:
        return self.plan.tp

    @property
    def pp(self) -> int:
        return self.plan.pp

    @property
    def micro_batches(self) -> int:
        return self.plan.micro_batches

    @property
    def distributed(self) -> bool:
        """Whether the job's ranks form a process group (every plan but ``single``)."""
        return not self.plan.single_process

    @property
    def collective_timeout_s(self) -> float:
        """How long a rank waits in the rendezvous or in one collective before it raises:
        ``min(max(timeout_s / 4, 10), 600)`` s (torch applies one timeout to both; docs/ARCHITECTURE.md
        "Failures"). A quarter of the job's budget, so a hang fails well before the job timeout."""
        return min(max(self.timeout_s / 4, 10.0), 600.0)

    @property
    def rendezvous_timeout_s(self) -> float:
        """How long joining the process group may take: the same value as
        :attr:`collective_timeout_s` (``init_process_group`` takes one timeout for both)."""
        return self.collective_timeout_s

    def hang_after_s(self, median_step_s: float) -> float:
        """The parent's watchdog calls a stepping job hung when, once a median step is known (every
        rank finished a timed step), no rank finished a step for this long:
        ``max(collective_timeout_s + 5, 10 × median step)``. The grace lets a rank's own collective
        timeout fire first; ten median steps let ranks compute a long step in lockstep. Before a
        median is known only ``timeout_s`` applies."""
        return max(self.collective_timeout_s + 5.0, 10.0 * median_step_s)

    @property
    def total_steps(self) -> int:
        """Warm-up and timed steps."""
        return self.warmup_steps + self.steps

    @property
    def local_batch(self) -> int:
        """Samples per data-parallel rank per step."""
        return self.global_batch // max(self.plan.dp, 1)

    @property
    def lr(self) -> float:
        return float(self.optimizer["lr"])

    def replace(self, **changes: Any) -> Job:
        """A copy with ``changes`` applied (a plan or hardware profile may be given as a dict)."""
        if isinstance(changes.get("plan"), dict):
            changes["plan"] = Plan.from_dict(changes["plan"])
        if isinstance(changes.get("hardware_cfg"), dict):
            changes["hardware_cfg"] = HardwareProfile.from_dict(changes["hardware_cfg"])
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the record's ``job``): every field, plus the derived ``id``."""
        out: dict[str, Any] = {"id": self.id}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if hasattr(value, "to_dict") else copy.deepcopy(value)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        """Inverse of :meth:`to_dict`; ``id`` is derived and ignored. Unknown or missing keys
        raise ``ValueError`` naming them."""
        names = {f.name for f in fields(cls)}
        extra, missing = set(d) - names - {"id"}, names - set(d)
        if extra or missing:
            raise ValueError(f"not a job: unknown keys {sorted(extra)}, missing keys {sorted(missing)}")
        kwargs = {k: copy.deepcopy(v) for k, v in d.items() if k in names}
        kwargs["plan"] = Plan.from_dict(d["plan"])
        kwargs["hardware_cfg"] = HardwareProfile.from_dict(d["hardware_cfg"])
        return cls(**kwargs)


@dataclass(frozen=True)
class Dropped:
    """A combination the study cannot run, and why."""

    model: str
    hardware: str
    strategy: str
    world_size: int
    reason: str

    def label(self) -> str:
        return f"{self.model} {self.hardware} {self.strategy} ws{self.world_size}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seq_len(model_cfg: dict[str, Any]) -> int | None:
    """Tokens per sample of a sequence model, else ``None``. In a validated config only the sequence
    architectures have a ``seq_len`` (config schema; ``benchbench.models.registry.ARCHITECTURES``' ``sequence``
    flag, tested), so expanding a study needs no torch import (2-3 s in every Snakemake run)."""
    return int(model_cfg["seq_len"]) if "seq_len" in model_cfg else None


def make_job(
    cfg: dict[str, Any], model: str, hardware: str, strategy: str, world_size: int, repeat: int
) -> tuple[Job, str | None]:
    """The job of one combination of a validated study config, and why it is infeasible
    (``None`` if it is not). Raises ``KeyError`` for an unknown strategy."""
    model_cfg = cfg["models"][model]
    plan = resolve_plan(strategy, world_size, cfg["strategy_defs"])
    batch = int(model_cfg.get("batch_size", cfg["batch_size"]))
    global_batch = batch if cfg["scaling"] == "strong" else batch * max(plan.dp, 1)
    job = Job(
        study=cfg["study"],
        model=model,
        model_cfg={k: v for k, v in model_cfg.items() if k != "batch_size"},
        hardware=hardware,
        hardware_cfg=load_hardware(hardware),
        strategy=strategy,
        plan=plan,
        world_size=world_size,
        global_batch=global_batch,
        seq_len=_seq_len(model_cfg),
        dtype=cfg["dtype"],
        steps=cfg["steps"],
        warmup_steps=cfg["warmup_steps"],
        seed=cfg["seed"],
        repeat=repeat,
        threads_per_rank=cfg["threads_per_rank"],
        scaling=cfg["scaling"],
        timeout_s=float(cfg["timeout_s"]),
        optimizer=dict(cfg["optimizer"]),
        loss_tolerance=float(cfg["loss_tolerance"]),
    )
    return job, job_infeasible_reason(job)


def job_infeasible_reason(job: Job) -> str | None:
    """Why ``job``'s plan cannot run its model at its world size and batch, its device cannot run
    the plan's GPU-only steps (:func:`~benchbench.spec.gpu_features.device_reason`), or it
    cannot be timed in steady state with the job's warm-up (``None``: it can)."""
    reason = infeasible_reason(job.plan, job.model_cfg, job.world_size, job.global_batch)
    reason = reason or device_reason(job.plan, job.hardware_cfg)
    if reason is None and job.plan.compression == "powersgd" and job.warmup_steps <= job.plan.powersgd_warmup:
        reason = (
            f"warmup_steps = {job.warmup_steps} <= powersgd_warmup = {job.plan.powersgd_warmup}: the first timed "
            "step would be PowerSGD's plain all-reduce warm-up or its first compressed step (which allocates "
            "its factor matrices and error buffers), not a steady compressed step"
        )
    return reason
