"""A Llama-style decoder (Touvron et al. 2023; Llama 3, Grattafiori et al. 2024): RMSNorm, rotary
position embedding, grouped-query attention, SwiGLU MLP, untied output head; no biases.

Module names follow the GPT's where the role is the same (``embed``, ``blocks.<i>``, ``attn.q/k/v``,
``head``), so the strategies' conventions carry over. Rotary angles are computed in ``forward``
from the positions (no buffer: a meta-built model materialises parameters only). Llama 3's
long-context RoPE frequency scaling (torchtitan's ``scaling="llama"``) is not applied: it changes
no shape, parameter count or FLOP.

Parallel layout, as torchtitan's ``apply_tp`` / ``pipeline_llm`` / ``apply_fsdp`` use it: q, k, v
and the MLP's w1, w3 column-wise (each TP rank owns heads/tp query heads and kv_heads/tp key/value
heads: GQA groups stay whole), o and w2 row-wise; the head column-wise over the vocabulary;
with sequence parallelism the RMSNorms are sequence-sharded and the embedding's output is
sequence-sharded. Pipeline stages split the blocks; the first keeps the embedding, the last the
final norm and head. Each block is one FSDP unit. Its parameter count, FLOPs and activation bytes:
:mod:`benchbench.models.formulas`; its per-rank tensors: :func:`benchbench.models.tensors.llama_tensors`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchbench.models.layout import stage_forward
from benchbench.models.tasks import STEP_STRIDE, MarkovTokens


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learned scale (Zhang & Sennrich 2019), eps 1e-5."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)

    @staticmethod
    def initial_value(leaf: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
        """The scale starts at 1 (as torch's and torchtitan's)."""
        del leaf, g
        return torch.ones(shape)


def rotary(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate ``x`` (batch, tokens, heads, head_dim) by position: each pair (x[2i], x[2i+1]) by
    angle pos·theta^(-2i/head_dim) — Meta's complex-number formulation, in real arithmetic."""
    t, d = x.shape[1], x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = torch.outer(torch.arange(t, device=x.device, dtype=torch.float32), freqs)  # (t, d/2)
    cos, sin = angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]
    pairs = x.float().reshape(*x.shape[:-1], d // 2, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).reshape(x.shape).type_as(x)


class Attention(nn.Module):
    """Causal grouped-query attention: ``heads`` query heads share ``kv_heads`` key/value heads."""

    def __init__(self, hidden: int, heads: int, kv_heads: int, rope_theta: int) -> None:
        super().__init__()
        self.head_dim, self.n_rep, self.rope_theta = hidden // heads, heads // kv_heads, float(rope_theta)
        self.q = nn.Linear(hidden, heads * self.head_dim, bias=False)
        self.k = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.v = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.o = nn.Linear(heads * self.head_dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        # -1 heads: under tensor parallelism a rank holds heads/tp and kv_heads/tp of them.
        q, k, v = (m(x).view(b, t, -1, self.head_dim) for m in (self.q, self.k, self.v))
        q, k = rotary(q, self.rope_theta), rotary(k, self.rope_theta)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        k, v = k.repeat_interleave(self.n_rep, dim=1), v.repeat_interleave(self.n_rep, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, t, -1))


class SwiGLU(nn.Module):
    """w2(silu(w1 x) · w3 x) (Shazeer 2020)."""

    def __init__(self, hidden: int, ffn_hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(hidden, ffn_hidden, bias=False)
        self.w2 = nn.Linear(ffn_hidden, hidden, bias=False)
        self.w3 = nn.Linear(hidden, ffn_hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class LlamaBlock(nn.Module):
    """x + attn(attn_norm(x)), then x + mlp(mlp_norm(x))."""

    def __init__(self, hidden: int, heads: int, kv_heads: int, ffn_hidden: int, rope_theta: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(hidden)
        self.attn = Attention(hidden, heads, kv_heads, rope_theta)
        self.mlp_norm = RMSNorm(hidden)
        self.mlp = SwiGLU(hidden, ffn_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class Llama(nn.Module):
    """Token embedding, ``layers`` blocks, final RMSNorm, untied LM head."""

    PIPELINE_FIRST = ("embed",)
    PIPELINE_LAST = ("norm", "head")

    def __init__(
        self,
        layers: int,
        hidden: int,
        heads: int,
        kv_heads: int,
        ffn_hidden: int,
        vocab: int,
        seq_len: int,
        rope_theta: int,
    ) -> None:
        super().__init__()
        del seq_len  # positions are rotary: no table sized by the sequence
        if hidden % heads or heads % kv_heads or (hidden // heads) % 2:
            raise ValueError(
                f"llama: hidden ({hidden}) must split into heads ({heads}) of even size, "
                f"heads into kv_heads ({kv_heads})"
            )
        self.embed: nn.Module | None = nn.Embedding(vocab, hidden)
        self.blocks = nn.ModuleDict(
            {str(i): LlamaBlock(hidden, heads, kv_heads, ffn_hidden, rope_theta) for i in range(layers)}
        )
        self.norm: nn.Module | None = RMSNorm(hidden)
        self.head: nn.Module | None = nn.Linear(hidden, vocab, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stage_forward(self, x)

    def tp_plan(self, sequence_parallel: bool) -> dict[str, Any]:
        """torchtitan's Llama TP plan over the parts this (possibly pipeline-pruned) model holds."""
        from torch.distributed.tensor import Replicate, Shard
        from torch.distributed.tensor.parallel import (
            ColwiseParallel,
            PrepareModuleInput,
            PrepareModuleOutput,
            RowwiseParallel,
            SequenceParallel,
        )

        sp = sequence_parallel
        row = RowwiseParallel(output_layouts=Shard(1)) if sp else RowwiseParallel()
        col = ColwiseParallel()
        block = {"attn.q": col, "attn.k": col, "attn.v": col, "attn.o": row}
        block |= {"mlp.w1": col, "mlp.w3": col, "mlp.w2": row}
        if sp:
            gather = PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),))
            block |= {"attn_norm": SequenceParallel(), "attn": gather, "mlp_norm": SequenceParallel(), "mlp": gather}
        plan = {f"blocks.{i}.{k}": style for i in self.blocks for k, style in block.items()}
        if self.embed is not None and sp:
            plan["embed"] = PrepareModuleOutput(output_layouts=Replicate(), desired_output_layouts=Shard(1))
        if self.norm is not None and sp:
            plan["norm"] = SequenceParallel()
        if self.head is not None:
            plan["head"] = ColwiseParallel(input_layouts=Shard(1) if sp else Replicate(), output_layouts=Replicate())
        return plan


class SparseMarkovTokens:
    """Next-token prediction on a fixed random Markov chain in which each token has ``k``
    successors (a (V, k) table; probabilities a fixed peaked softmax over the k): O(V·k) memory,
    where :class:`~benchbench.models.tasks.MarkovTokens`' dense V x V matrix would take 66 GB at Llama 3's
    128256 tokens. Inputs are tokens 0..T-1, targets 1..T."""

    def __init__(self, vocab: int, seq_len: int, seed: int, k: int = 8, sharpness: float = 4.0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.successors = torch.randint(vocab, (vocab, k), generator=g)
        self.probs = torch.softmax(sharpness * torch.randn(k, generator=g), dim=0)
        self.vocab, self.seq_len, self.seed = vocab, seq_len, seed

    loss_fn = staticmethod(MarkovTokens.loss_fn)  # next-token cross-entropy, as the gpt's task

    def batch(self, step: int, global_batch: int) -> tuple[torch.Tensor, torch.Tensor]:

        g = torch.Generator().manual_seed(self.seed * STEP_STRIDE + step)
        tokens = torch.empty(global_batch, self.seq_len + 1, dtype=torch.long)
        tokens[:, 0] = torch.randint(self.vocab, (global_batch,), generator=g)
        picks = torch.multinomial(self.probs, global_batch * self.seq_len, replacement=True, generator=g)
        picks = picks.view(global_batch, self.seq_len)
        for t in range(self.seq_len):
            tokens[:, t + 1] = self.successors[tokens[:, t], picks[:, t]]
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


#: Above this vocabulary the dense chain (V² floats) gives way to :class:`SparseMarkovTokens`.
DENSE_CHAIN_MAX_VOCAB = 8192


def llama_task(model_cfg: dict[str, Any], seed: int) -> Any:
    """The task of a ``llama`` model config: the gpt's dense Markov chain up to
    :data:`DENSE_CHAIN_MAX_VOCAB` tokens (the tiny presets), the sparse one above."""
    vocab, seq_len = int(model_cfg["vocab"]), int(model_cfg["seq_len"])
    if vocab <= DENSE_CHAIN_MAX_VOCAB:
        return MarkovTokens(vocab, seq_len, seed)
    return SparseMarkovTokens(vocab, seq_len, seed)
