"""A vision transformer (Dosovitskiy et al. 2021): non-overlapping patches, each flattened and
projected linearly (the paper's "linear projection of flattened patches", a Linear: same
parameters and FLOPs as the stride-``patch`` convolution), a learned class token and position
embedding, pre-LayerNorm encoder blocks (bidirectional attention, GELU MLP), a final LayerNorm and
a linear classification head on the class token. Plus its seeded synthetic task,
:class:`ImageClasses`.

Parallel layout: tensor parallel as the GPT's (q, k, v and fc1 column-wise, proj and fc2
row-wise, the head column-wise over the classes); no sequence parallelism (197 tokens at 224 px
divide by no tp > 1); pipeline stages split the blocks, the first keeps the patch embedding, the
last the final LayerNorm and head; each block is one FSDP unit.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """Image (b, C, H, W) -> tokens (b, 1 + N, hidden): flattened p x p patches through ``proj``,
    a class token prepended, position embedding added."""

    def __init__(self, image_size: int, patch: int, channels: int, hidden: int) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"vit: image_size ({image_size}) must be a multiple of patch ({patch})")
        self.patch, self.grid = patch, image_size // patch
        self.proj = nn.Linear(channels * patch * patch, hidden)
        self.cls = nn.Parameter(torch.zeros(1, 1, hidden))
        self.pos = nn.Parameter(torch.zeros(1, 1 + self.grid * self.grid, hidden))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        b, c, p, g = img.shape[0], img.shape[1], self.patch, self.grid
        patches = img.reshape(b, c, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, c * p * p)
        x = self.proj(patches)
        return torch.cat([self.cls.expand(b, -1, -1), x], dim=1) + self.pos

    @staticmethod
    def initial_value(leaf: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
        """Class token and position embedding ~ N(0, 0.02²) (as timm's ViT)."""
        del leaf
        return torch.empty(shape).normal_(0.0, 0.02, generator=g)


class Attention(nn.Module):
    """Bidirectional multi-head self-attention, separate q, k, v (split by heads under TP)."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.head_dim = hidden // heads
        self.q, self.k, self.v = (nn.Linear(hidden, hidden) for _ in range(3))
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (m(x).view(b, t, -1, self.head_dim).transpose(1, 2) for m in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, -1))


class EncoderBlock(nn.Module):
    """x + attn(ln1(x)), then x + fc2(gelu(fc1(ln2(x))))."""

    def __init__(self, hidden: int, heads: int, mlp_hidden: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = Attention(hidden, heads)
        self.ln2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(hidden, mlp_hidden))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(mlp_hidden, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    """Patch embedding, ``layers`` encoder blocks, final LayerNorm, head on the class token."""

    PIPELINE_FIRST = ("embed",)
    PIPELINE_LAST = ("norm", "head")

    def __init__(
        self,
        image_size: int,
        patch: int,
        channels: int,
        layers: int,
        hidden: int,
        heads: int,
        mlp_hidden: int,
        classes: int,
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"vit: hidden ({hidden}) must be divisible by heads ({heads})")
        self.embed: nn.Module | None = PatchEmbed(image_size, patch, channels, hidden)
        self.blocks = nn.ModuleDict({str(i): EncoderBlock(hidden, heads, mlp_hidden) for i in range(layers)})
        self.norm: nn.Module | None = nn.LayerNorm(hidden)
        self.head: nn.Module | None = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x)
        for block in self.blocks.values():
            x = block(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.head is not None:
            x = self.head(x[:, 0])
        return x

    def tp_plan(self, sequence_parallel: bool) -> dict[str, Any]:
        """Megatron-style split of every block; the head column-wise, output replicated."""
        from torch.distributed.tensor import Replicate
        from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

        if sequence_parallel:
            raise ValueError("vit: no sequence-parallel plan (plan rules drop it first)")
        col, row = ColwiseParallel(), RowwiseParallel()
        block = {"attn.q": col, "attn.k": col, "attn.v": col, "attn.proj": row, "mlp.fc1": col, "mlp.fc2": row}
        plan: dict[str, Any] = {f"blocks.{i}.{k}": style for i in self.blocks for k, style in block.items()}
        if self.head is not None:
            plan["head"] = ColwiseParallel(input_layouts=Replicate(), output_layouts=Replicate())
        return plan


def vit_params(
    image_size: int, patch: int, channels: int, layers: int, hidden: int, heads: int, mlp_hidden: int, classes: int
) -> int:
    """Exact parameter count. Patch projection C·p²·h + h, class token h, position embedding
    (1 + N)·h with N = (image_size/p)²; per block q, k, v, proj 4h² + 4h, fc1/fc2 2h·m + m + h,
    two LayerNorms 4h; final LayerNorm 2h; head h·classes + classes. ViT-B/16: 86,567,656."""
    del heads
    h, n = hidden, (image_size // patch) ** 2
    embed = channels * patch * patch * h + h + h + (1 + n) * h
    block = 4 * h * h + 4 * h + 2 * h * mlp_hidden + mlp_hidden + h + 4 * h
    return embed + layers * block + 2 * h + h * classes + classes


def vit_stage_flops(
    image_size: int, patch: int, channels: int, layers: int, hidden: int, heads: int, mlp_hidden: int, classes: int
) -> tuple[float, float, float]:
    """Forward FLOPs of one image (first stage's patch projection 2NCp²h, one block
    2T(4h² + 2hm) + 4T²h, the head 2h·classes): :func:`vit_train_flops_per_sample`."""
    del heads, layers
    h, n = hidden, (image_size // patch) ** 2
    t = 1 + n
    block = 2 * t * (4 * h * h + 2 * h * mlp_hidden) + 4 * t * t * h
    return 2.0 * n * channels * patch * patch * h, float(block), 2.0 * h * classes


def vit_train_flops_per_sample(
    image_size: int, patch: int, channels: int, layers: int, hidden: int, heads: int, mlp_hidden: int, classes: int
) -> float:
    """Training FLOPs of one image, 3 x forward. Forward: the patch projection 2·N·C·p²·h; per
    block over T = 1 + N tokens the projections 2T(4h² + 2h·m) and attention (scores and weighted
    sum, bidirectional: all of it) 4T²h; the head on the class token 2h·classes. LayerNorm, GELU,
    softmax and additions are not counted.

        train_flops = 3 · (2NCp²h + layers · (2T(4h² + 2hm) + 4T²h) + 2h·classes)
    """
    args = (image_size, patch, channels, layers, hidden, heads, mlp_hidden, classes)
    first, block, last = vit_stage_flops(*args)
    return 3.0 * (first + layers * block + last)


def vit_activations(
    cfg: dict[str, Any], stages: list[int], n_stages: int, b: int, forwards: int, tp: int, kept: frozenset = frozenset()
) -> float:
    """Saved fp32 bytes of one step on a rank holding pipeline ``stages`` (b images, T = 1 + N
    tokens; counted tensor by tensor on the tiny preset: tests/test_archs.py). Per block, in 4-byte
    elements: 4·T·b·h (each LayerNorm's input and output) + (4h + 2m)·T·b / tp (q, k, v, attention
    output; fc1 and GELU outputs) + 2·2·T·b (LayerNorm mean and 1/std) + heads/tp·T·b
    (log-sum-exp). First stage: the flattened patches (N·C·p² per image); last: the final
    LayerNorm over all tokens (2h + 2 per token), the log-softmax (classes), targets (int64), loss.
    A block in ``kept`` (activation checkpointing) saves only its input, T·b·h."""
    layers, h, a, m, c = (int(cfg[k]) for k in ("layers", "hidden", "heads", "mlp_hidden", "classes"))
    n = (int(cfg["image_size"]) // int(cfg["patch"])) ** 2
    t = 1 + n
    per_block = 4.0 * t * b * (4 * h + (4 * h + 2 * m) / tp) + 4 * (4 * b * t + a // tp * b * t)
    out = 0.0
    for st in stages:
        mine = range(st * layers // n_stages, (st + 1) * layers // n_stages)
        out += sum(4.0 * t * b * h if i in kept else per_block for i in mine)
        out += 4.0 * b * n * int(cfg["channels"]) * int(cfg["patch"]) ** 2 if st == 0 else 0
        out += 4.0 * b * (t * (2 * h + 2) + c) + 8 * b + 4 * forwards if st == n_stages - 1 else 0
    return out


class ImageClasses:
    """Seeded, learnable synthetic images: each class has a fixed random low-resolution template
    (C x 4 x 4, blown up to the image size); an image is its class's template plus N(0, 1) noise.
    Cross-entropy on the class."""

    def __init__(self, image_size: int, channels: int, classes: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.templates = 2 * torch.randn(classes, channels, 4, 4, generator=g)
        self.image_size, self.classes, self.seed = image_size, classes, seed

    @classmethod
    def for_model(cls, model_cfg: dict[str, Any], seed: int) -> ImageClasses:
        """The task of a ``vit`` model config: its image size, channels and classes."""
        return cls(int(model_cfg["image_size"]), int(model_cfg["channels"]), int(model_cfg["classes"]), seed)

    @staticmethod
    def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), targets)

    def batch(self, step: int, global_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        from benchbench.models.tasks import _STEP_STRIDE

        g = torch.Generator().manual_seed(self.seed * _STEP_STRIDE + step)
        y = torch.randint(self.classes, (global_batch,), generator=g)
        base = F.interpolate(self.templates[y], size=(self.image_size, self.image_size), mode="nearest")
        return base + torch.randn(base.shape, generator=g), y
