"""Model registry: the architectures a study can name, their sizes and analytic training FLOPs.

A study names models by its own labels (``gpt-small``); each label carries an ``arch`` (a key
of :data:`ARCHITECTURES`) and that architecture's size settings. :func:`model_info` turns such a
config into its parameter count and FLOPs (:mod:`benchbench.models.formulas`, no torch),
:func:`build_model` into an ``nn.Module`` and :func:`make_task` into its seeded synthetic task.

This module imports no torch: the workflow side (study expansion, the cost model) reads it. Each
architecture names its builder and its task as ``"module:name"`` (:func:`resolve`), imported only
when a model is built or a task made: torch stays inside the builders
(:mod:`.mlp`, :mod:`.gpt`, :mod:`.llama`, :mod:`.vit`, :mod:`.tasks`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchbench.models import custom, formulas
from benchbench.models.tensors import Tensor, gpt_tensors, llama_tensors, mlp_tensors, vit_tensors


@dataclass(frozen=True)
class ModelInfo:
    """What the analysis needs to know of a model without building it."""

    arch: str
    params: int
    train_flops_per_sample: float
    tokens_per_sample: int  # 0 for models that do not consume token sequences


@dataclass(frozen=True)
class Architecture:
    """How to build one architecture and describe it analytically."""

    build: str  # "module:name" of its builder: (size settings) -> nn.Module (:func:`resolve`)
    params: Callable[..., int]
    train_flops_per_sample: Callable[..., float]
    size_keys: tuple[str, ...]
    sequence: bool  # consumes token sequences (seq_len, tokens/s)
    task: str  # "module:name" of (model config, seed) -> its seeded task (:func:`resolve`)
    # forward FLOPs per sample of (the first stage's extras, one block, the last stage's extras):
    # the pipeline's FLOP share (benchbench.costmodel.tensors.flop_share); None: not split
    stage_flops: Callable[..., tuple[float, float, float]] | None = None
    # saved-activation bytes of a rank: (model config, its stages, n_stages, batch, forwards, tp)
    activations: Callable[..., float] | None = None
    # the parameter tensors a rank holds: (model config, stage, n_stages, tp); None: read off the
    # meta-built model (benchbench.models.accounting.meta_tensors, torch)
    tensors: Callable[..., list[Tensor]] | None = None


ARCHITECTURES: dict[str, Architecture] = {
    "mlp": Architecture(
        "benchbench.models.mlp:MLP",
        formulas.mlp_params,
        formulas.mlp_train_flops_per_sample,
        ("width", "depth", "out_dim"),
        sequence=False,
        task="benchbench.models.tasks:TeacherRegression.for_model",
        tensors=mlp_tensors,
    ),
    "gpt": Architecture(
        "benchbench.models.gpt:GPT",
        formulas.gpt_params,
        formulas.gpt_train_flops_per_sample,
        ("layers", "hidden", "heads", "seq_len", "vocab"),
        sequence=True,
        task="benchbench.models.tasks:MarkovTokens.for_model",
        tensors=gpt_tensors,
    ),
    "llama": Architecture(
        "benchbench.models.llama:Llama",
        formulas.llama_params,
        formulas.llama_train_flops_per_sample,
        ("layers", "hidden", "heads", "kv_heads", "ffn_hidden", "vocab", "seq_len", "rope_theta"),
        sequence=True,
        task="benchbench.models.llama:llama_task",
        stage_flops=formulas.llama_stage_flops,
        activations=formulas.llama_activations,
        tensors=llama_tensors,
    ),
    "vit": Architecture(
        "benchbench.models.vit:ViT",
        formulas.vit_params,
        formulas.vit_train_flops_per_sample,
        ("image_size", "patch", "channels", "layers", "hidden", "heads", "mlp_hidden", "classes"),
        sequence=False,
        task="benchbench.models.vit:ImageClasses.for_model",
        stage_flops=formulas.vit_stage_flops,
        activations=formulas.vit_activations,
        tensors=vit_tensors,
    ),
    "custom": Architecture(  # the user's entry point (benchbench.models.custom): its keys are names
        "benchbench.models.custom:build",
        custom.params,
        custom.train_flops_per_sample,
        ("entry", "path"),
        sequence=False,
        task="benchbench.models.custom:CustomTask.for_model",
    ),
}


def resolve(ref: str) -> Any:
    """The object ``ref`` (``"module:name"``, ``name`` possibly dotted: ``Class.method``) names,
    its module imported now: how the registry reaches a builder without importing torch itself."""
    module, name = ref.split(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def size_args(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """The architecture's size settings from a model config (``arch`` and extras dropped): integers,
    but a custom model's entry point and path (strings)."""
    arch = ARCHITECTURES[model_cfg["arch"]]
    return {k: model_cfg[k] if isinstance(model_cfg[k], str) else int(model_cfg[k]) for k in arch.size_keys}


def make_task(model_cfg: dict[str, Any], seed: int) -> Any:
    """The seeded synthetic task (a :class:`~benchbench.models.tasks.SyntheticTask`) that trains a
    model config's architecture."""
    return resolve(ARCHITECTURES[model_cfg["arch"]].task)(model_cfg, seed)


def model_info(model_cfg: dict[str, Any]) -> ModelInfo:
    """Parameter count, training FLOPs per sample and tokens per sample, without building."""
    arch = ARCHITECTURES[model_cfg["arch"]]
    args = size_args(model_cfg)
    return ModelInfo(
        arch=model_cfg["arch"],
        params=arch.params(**args),
        train_flops_per_sample=arch.train_flops_per_sample(**args),
        tokens_per_sample=args["seq_len"] if arch.sequence else 0,
    )
