"""Exposed communication of data-parallel gradient synchronisation, by paired timing.

Method (docs/METRICS.md, "Exposed communication"; /work/shared/FACTS.md): after the timed steps,
the same trainer runs ``rounds`` pairs of extra steps, one with its gradient synchronisation
and one without, in alternating order (on/off, off/on, ...) so a drift cancels. Without
synchronisation the compute is unchanged: DDP keeps its buckets and hooks but its comm hook
returns the bucket untouched (a no-op future, as ``debugging_hooks.noop_hook``); the hand-written
all-reduce (``dp-naive``) is skipped. Each step's time is the slowest rank's, after a barrier.

    exposed_comm_s        = median over rounds of (t_on − t_off)
    exposed_comm_fraction = exposed_comm_s / median t_on

It covers the data-parallel gradient sync of ``naive``, ``ddp`` and ``zero1`` (with any
compression) — alone or inside hybrids; other communication (ZeRO-1's parameter broadcast,
FSDP's gathers, TP's and the pipeline's transfers) is part of the computation it belongs to and
is not switched off: for plans without a switchable sync the figures are null.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from benchbench.strategies.compression import switched_hook


@dataclass
class GradSyncSwitch:
    """Turns the gradient synchronisation of a trainer's modules on and off."""

    hooks: list[Any] = field(default_factory=list)
    syncs: list[Any] = field(default_factory=list)  # NaiveGradSync objects (``enabled`` flag)

    def __bool__(self) -> bool:
        return bool(self.hooks or self.syncs)

    def set(self, on: bool) -> None:
        for h in self.hooks:
            h.on = on
        for s in self.syncs:
            s.enabled = on


def install_switch(modules: list[torch.nn.Module], syncs: list[Any]) -> GradSyncSwitch:
    """A switch over ``modules``' DDP wrappers and the hand-written ``syncs``. A DDP module whose
    plan installed a switched hook (compression) keeps it; one with DDP's built-in all-reduce gets
    ``allreduce_hook`` behind a switch (registered now, after the timed steps: the timed steps ran
    DDP's built-in path)."""
    switch = GradSyncSwitch(syncs=list(syncs))
    for m in modules:
        if not isinstance(m, DistributedDataParallel):
            continue
        hook = getattr(m, "_benchbench_hook", None)
        if hook is None and m._comm_hooks:
            return GradSyncSwitch()  # a hook benchbench did not install (a test's mutant): no switch
        if hook is None:
            hook = switched_hook(default_hooks.allreduce_hook)
            m.register_comm_hook(m.process_group, hook)
            m._benchbench_hook = hook
        switch.hooks.append(hook)
    return switch


def paired_steps(
    trainer: Any, batch: tuple[torch.Tensor, ...], switch: GradSyncSwitch, rounds: int, step: Any
) -> tuple[list[float], list[float]]:
    """This rank's times of ``rounds`` steps with and without sync, alternating which goes first.
    ``step(trainer, batch) -> seconds`` times one step after a barrier."""
    on, off = [], []
    try:
        for i in range(rounds):
            for state in (True, False) if i % 2 == 0 else (False, True):
                switch.set(state)
                (on if state else off).append(step(trainer, batch))
    finally:
        switch.set(True)
    return on, off


def exposed_figures(on: np.ndarray, off: np.ndarray) -> tuple[float, float]:
    """(exposed_comm_s, exposed_comm_fraction) from the slowest rank's paired step times."""
    t_on = float(np.median(on))
    exposed = float(np.median(on - off))
    return exposed, exposed / t_on if t_on > 0 else float("nan")


def timed_step(trainer: Any, batch: tuple[torch.Tensor, ...], device: torch.device) -> float:
    """One step after a barrier, device-synchronised: its wall time on this rank."""
    import torch.distributed as dist

    dist.barrier()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    trainer.train_step(*batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0
