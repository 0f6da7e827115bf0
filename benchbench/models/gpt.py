"""The GPT as ``nn.Module``s: a decoder-only transformer with learned absolute positions, pre-LayerNorm
blocks (separate q, k, v so tensor parallelism splits them by heads) and an untied head (its
parameter count and FLOPs: :mod:`benchbench.models.formulas`; its task:
:class:`~benchbench.models.tasks.MarkovTokens`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchbench.models.layout import stage_forward


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with separate q/k/v projections, so that tensor
    parallelism can split them column-wise by heads and ``proj`` row-wise."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.head_dim = hidden // heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        # -1 heads: under tensor parallelism a rank holds only its share of the heads.
        q, k, v = (m(x).view(b, t, -1, self.head_dim).transpose(1, 2) for m in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Module):
    """The block's MLP: Linear(h, 4h), GELU, Linear(4h, h)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, 4 * hidden)
        self.fc2 = nn.Linear(4 * hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = CausalSelfAttention(hidden, heads)
        self.ln2 = nn.LayerNorm(hidden)
        self.mlp = FeedForward(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Embedding(nn.Module):
    """Token embedding plus learned absolute position embedding."""

    def __init__(self, vocab: int, seq_len: int, hidden: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(seq_len, hidden)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))


class GPT(nn.Module):
    """Decoder-only transformer: embeddings, ``layers`` pre-LN blocks, final LayerNorm, untied LM
    head (untied so a pipeline's last stage owns it alone).

    A pipeline stage keeps only its share: parts it does not own are set to ``None`` and blocks it
    does not own are deleted (a ``ModuleDict`` keeps the survivors' names, so parameters keep
    their names on every stage)."""

    PIPELINE_FIRST = ("embed",)  # kept by the first pipeline stage only (benchbench.models.layout)
    PIPELINE_LAST = ("ln_f", "head")  # kept by the last

    def __init__(self, layers: int, hidden: int, heads: int, seq_len: int, vocab: int) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"gpt: hidden ({hidden}) must be divisible by heads ({heads})")
        self.embed: nn.Module | None = Embedding(vocab, seq_len, hidden)
        self.blocks = nn.ModuleDict({str(i): Block(hidden, heads) for i in range(layers)})
        self.ln_f: nn.Module | None = nn.LayerNorm(hidden)
        self.head: nn.Module | None = nn.Linear(hidden, vocab, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stage_forward(self, x)
