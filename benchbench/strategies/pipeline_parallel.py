"""Pipeline parallelism with ``torch.distributed.pipelining``.

The model is split by layers into ``pp * virtual_stages`` stages: stage 0 also owns the
embeddings, the last stage the final LayerNorm and the LM head. Each rank builds the model on the
``meta`` device (no memory), prunes it to its stages and only then allocates and initialises what
is left (:func:`~benchbench.models.weights.materialize`: every parameter seeded by its name, so every stage
starts from exactly the weights of the single-process run), wraps it in ``PipelineStage`` and runs
a schedule over ``micro_batches`` micro-batches per step:

Schedules (the table with torch classes and bubble formulas:
:mod:`~benchbench.spec.schedules`):

* ``gpipe`` — all forwards, then all backwards (Huang et al., 2019);
* ``1f1b`` — one forward, one backward in steady state (PipeDream-Flush, Narayanan et al., 2019);
* ``interleaved-1f1b`` — 1F1B over ``virtual_stages`` looped chunks per rank (Narayanan et al., 2021);
* ``looped-bfs`` — breadth-first over looped chunks (Lamy-Poirier, 2023);
* ``interleaved-zb`` / ``zbv`` — zero-bubble schedules that split backward into input- and
  weight-gradient passes to fill the bubble (Qi et al., 2023); ZB-V places two chunks per rank in
  a V shape;
* ``dualpipev`` — DeepSeek-V3's DualPipe cut to a V (two stages per rank, forward of one
  micro-batch paired with backward of another; DeepSeek-AI, 2024), needing m ≥ 2p.

Gradients are scaled by 1 / micro_batches, so a step equals one step on the whole batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from benchbench.models.build import build_model
from benchbench.spec.schedules import SCHEDULES

if TYPE_CHECKING:  # imported by the plans that pipeline
    from torch.distributed.pipelining import PipelineStage


def schedule_class(name: str) -> Any:
    """The torch schedule class of ``name`` (imports torch.distributed.pipelining)."""
    import torch.distributed.pipelining as pipelining

    return getattr(pipelining, SCHEDULES[name].torch_class)


def is_multi_stage(name: str) -> bool:
    """Whether torch's schedule drives several stages per rank (a ``PipelineScheduleMulti``)."""
    from torch.distributed.pipelining.schedules import PipelineScheduleMulti

    return issubclass(schedule_class(name), PipelineScheduleMulti)


def build_stage_module(model_cfg: dict[str, Any], stage: int, n_stages: int) -> nn.Module:
    """The model on the ``meta`` device, pruned to stage ``stage`` of ``n_stages`` (split by
    layers; the parts only the first / last stage keep are the model's ``PIPELINE_FIRST`` /
    ``PIPELINE_LAST``: :mod:`benchbench.models.layout`); nothing is allocated until it is materialised."""
    model = build_model(model_cfg)
    layers = len(model.blocks)
    lo, hi = stage * layers // n_stages, (stage + 1) * layers // n_stages
    for name in list(model.blocks):
        if not lo <= int(name) < hi:
            del model.blocks[name]
    for part in model.PIPELINE_FIRST if stage != 0 else ():  # the model declares its ends
        setattr(model, part, None)
    for part in model.PIPELINE_LAST if stage != n_stages - 1 else ():
        setattr(model, part, None)
    return model


def make_stage(module: nn.Module, stage: int, n_stages: int, device: torch.device, group: Any) -> PipelineStage:
    """Wrap a stage module for the schedule (its neighbours are found through ``group``)."""
    from torch.distributed.pipelining import PipelineStage

    return PipelineStage(module, stage, n_stages, device, group=group)


def make_schedule(schedule: str, stages: list[PipelineStage], micro_batches: int, loss_fn: Any) -> Any:
    """The ``torch.distributed.pipelining`` schedule object over this rank's stages."""
    cls = schedule_class(schedule)
    if is_multi_stage(schedule):
        return cls(stages, n_microbatches=micro_batches, loss_fn=loss_fn)
    (stage,) = stages
    return cls(stage, n_microbatches=micro_batches, loss_fn=loss_fn)
