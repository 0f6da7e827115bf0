"""The user's own model: ``arch: custom`` names an entry point ``module:function`` and the folder
``path`` (relative to the study file) its module is loaded from. Nothing else is imported and
nothing of the study file is evaluated: the module file ``<path>/<module as a path>.py`` is loaded
by location (not through ``sys.path``), once per process, and ``function()`` is called with no
arguments. It returns a :class:`CustomSpec` (or any object, or a dict, with those attributes):

required
    ``build()`` -> the ``nn.Module`` (called under ``torch.device("meta")``: create parameters
    only, no buffers that need values); ``batch(step, global_batch, seed)`` -> ``(inputs,
    targets)``, a pure function of its arguments; ``loss(outputs, targets)`` -> scalar;
    ``flops_per_sample`` (training FLOPs of one sample, your convention: say it).
optional
    ``tp_plan(model, sequence_parallel)`` -> ``{module path: ParallelStyle}`` (without it tensor
    parallel plans are dropped with that reason); ``pipeline = (first parts, last parts)``: the
    attributes only the first / last pipeline stage keeps — the model must then keep its repeated
    blocks in a ``ModuleDict`` named ``blocks`` and skip ``None`` parts in ``forward`` (without it
    pipeline plans are dropped); ``tp_divides = {name: size}``: sizes tp must divide;
    ``sequence_parallel`` (bool, default False). FSDP units: the model's ``blocks`` (or
    ``layers``), else the root alone.

Every parameter is initialised by its name and module type (:func:`benchbench.models.weights.initial_value`:
Linear, Embedding, LayerNorm, or a module's own ``initial_value(leaf, shape, generator)``), so that
each plan starts from the reference's weights.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any


@dataclass
class CustomSpec:
    """What an entry point returns (see the module docstring)."""

    build: Any
    batch: Any
    loss: Any
    flops_per_sample: float
    tp_plan: Any = None
    pipeline: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    tp_divides: dict[str, int] = field(default_factory=dict)
    sequence_parallel: bool = False


REQUIRED = ("build", "batch", "loss", "flops_per_sample")


@cache
def load(entry: str, path: str) -> CustomSpec:
    """The spec that ``entry`` (``module:function``) returns, its module loaded from ``path`` only.
    ``ValueError`` naming the key and what is allowed when it cannot be."""
    module_name, function = entry.split(":")
    file = Path(path, *module_name.split(".")).with_suffix(".py")
    if not file.is_file():
        raise ValueError(f"custom model entry {entry!r}: no file {file}; allowed: a module under path {path}")
    spec = importlib.util.spec_from_file_location(f"benchbench_custom.{module_name}", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    got = getattr(module, function, None)
    if not callable(got):
        raise ValueError(f"custom model entry {entry!r}: {file} defines no function {function!r}")
    raw = got()
    keys = CustomSpec.__dataclass_fields__
    values = raw if isinstance(raw, dict) else {k: getattr(raw, k) for k in keys if hasattr(raw, k)}
    missing = [k for k in REQUIRED if k not in values]
    if missing:
        raise ValueError(f"custom model entry {entry!r} returned no {missing}; required: {list(REQUIRED)}")
    return CustomSpec(**{k: v for k, v in values.items() if k in keys})


def build(entry: str, path: str) -> Any:
    """The entry point's model, with its declared layout attached (``tp_plan``, pipeline ends) the
    way the built-in models declare theirs (:mod:`benchbench.models.layout`)."""
    spec = load(entry, path)
    model = spec.build()
    if spec.tp_plan is not None:
        model.tp_plan = lambda sequence_parallel: spec.tp_plan(model, sequence_parallel)
    if spec.pipeline is not None:
        model.PIPELINE_FIRST, model.PIPELINE_LAST = (tuple(p) for p in spec.pipeline)
    return model


def params(entry: str, path: str) -> int:
    """Parameters of the model, counted on the ``meta`` device (the one way to count a model that
    only its own code describes: torch, imported here, named in ``.importlinter``)."""
    from benchbench.models.meta_count import meta_param_count

    return meta_param_count(load(entry, path).build)


def train_flops_per_sample(entry: str, path: str) -> float:
    """The entry point's own figure (its convention)."""
    return float(load(entry, path).flops_per_sample)


class CustomTask:
    """The entry point's batches and loss as a :class:`~benchbench.models.tasks.SyntheticTask`."""

    def __init__(self, spec: CustomSpec, seed: int) -> None:
        self.spec, self.seed = spec, seed
        self.loss_fn = spec.loss

    @classmethod
    def for_model(cls, model_cfg: dict[str, Any], seed: int) -> CustomTask:
        """The task of a ``custom`` model config."""
        return cls(load(model_cfg["entry"], model_cfg["path"]), seed)

    def batch(self, step: int, global_batch: int) -> tuple[Any, Any]:
        return self.spec.batch(step, global_batch, self.seed)
