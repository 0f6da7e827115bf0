"""A vision transformer (Dosovitskiy et al. 2021): non-overlapping patches, each flattened and
projected linearly (the paper's "linear projection of flattened patches", a Linear: same
parameters and FLOPs as the stride-``patch`` convolution), a learned class token and position
embedding, pre-LayerNorm encoder blocks (bidirectional attention, GELU MLP), a final LayerNorm and
a linear classification head on the class token. Plus its seeded synthetic task,
:class:`ImageClasses`.

Parallel layout: tensor parallel as the GPT's (q, k, v and fc1 column-wise, proj and fc2
row-wise, the head column-wise over the classes); no sequence parallelism (197 tokens at 224 px
divide by no tp > 1); pipeline stages split the blocks, the first keeps the patch embedding, the
last the final LayerNorm and head; each block is one FSDP unit. Its parameter count, FLOPs and
activation bytes: :mod:`benchbench.models.formulas`; its per-rank tensors:
:func:`benchbench.models.tensors.vit_tensors`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchbench.models.tasks import STEP_STRIDE


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
        g = torch.Generator().manual_seed(self.seed * STEP_STRIDE + step)
        y = torch.randint(self.classes, (global_batch,), generator=g)
        base = F.interpolate(self.templates[y], size=(self.image_size, self.image_size), mode="nearest")
        return base + torch.randn(base.shape, generator=g), y
