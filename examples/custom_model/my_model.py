"""A worked example of benchbench's ``arch: custom``: your own model, benchmarked under benchbench's
plans and checked by its correctness gate. study.yaml (next to this file) names it:

    models:
      my-mlp:
        arch: custom
        entry: my_model:spec   # module:function, the module loaded from `path` only
        path: .                # relative to the study file

``spec()`` returns the model's builder, a seeded batch function, the loss and the training FLOPs
per sample; optionally its tensor-parallel plan and pipeline ends (without them, tensor and
pipeline plans are dropped with that reason). Everything here is plain torch.
"""

import torch
import torch.nn.functional as F
from torch import nn

IN, WIDTH, LAYERS, CLASSES = 16, 32, 2, 4


class Block(nn.Module):
    """x + fc2(gelu(fc1(norm(x)))): a residual MLP block."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(WIDTH)
        self.fc1 = nn.Linear(WIDTH, 4 * WIDTH)
        self.fc2 = nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class ResidualMLP(nn.Module):
    """Input projection, LAYERS residual blocks (in a ModuleDict ``blocks``: pipeline stages
    delete the blocks they do not own), final LayerNorm, classification head. Parts a pipeline
    stage does not own are ``None``; ``forward`` skips them."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(IN, WIDTH)
        self.blocks = nn.ModuleDict({str(i): Block() for i in range(LAYERS)})
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, x):
        if self.embed is not None:
            x = self.embed(x)
        for block in self.blocks.values():
            x = block(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.head is not None:
            x = self.head(x)
        return x


def batch(step, global_batch, seed):
    """Inputs ~ N(0, 1); the class is the argmax of a fixed random linear teacher. A pure function
    of (step, global_batch, seed): every rank draws the same global batch."""
    teacher = torch.randn(IN, CLASSES, generator=torch.Generator().manual_seed(seed))
    x = torch.randn(global_batch, IN, generator=torch.Generator().manual_seed(seed * 1_000_003 + step))
    return x, (x @ teacher).argmax(dim=1)


def loss(logits, targets):
    return F.cross_entropy(logits.float(), targets)


def tp_plan(model, sequence_parallel):
    """Megatron-style: each block's fc1 column-wise, fc2 row-wise; the head column-wise."""
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    plan = {}
    for i in model.blocks:
        plan[f"blocks.{i}.fc1"] = ColwiseParallel()
        plan[f"blocks.{i}.fc2"] = RowwiseParallel()
    if model.head is not None:
        plan["head"] = ColwiseParallel(output_layouts=Replicate())
    return plan


def spec():
    """benchbench's entry point (see benchbench/models/custom.py for every key)."""
    matmul_weights = IN * WIDTH + LAYERS * 2 * WIDTH * 4 * WIDTH + WIDTH * CLASSES
    return {
        "build": ResidualMLP,
        "batch": batch,
        "loss": loss,
        "flops_per_sample": 6 * matmul_weights,  # 3 x forward, 2 FLOPs per multiply-accumulate
        "tp_plan": tp_plan,
        "tp_divides": {"fc1 width": 4 * WIDTH, "classes": CLASSES},
        "pipeline": (("embed",), ("norm", "head")),
    }
