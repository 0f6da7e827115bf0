"""Model registry: the architectures a study can name, their sizes and analytic training FLOPs.

A study names models by its own labels (``gpt-small``); each label carries an ``arch`` (a key
of :data:`ARCHITECTURES`) and that architecture's size settings. :func:`build_model` turns such
a config into an ``nn.Module`` and :func:`model_info` into its parameter count and FLOPs.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchbench.models import custom, llama, vit
from benchbench.models.presets import stage_forward
from benchbench.models.tasks import MarkovTokens, SyntheticTask, TeacherRegression


@dataclass(frozen=True)
class ModelInfo:
    """What the analysis needs to know of a model without building it."""

    arch: str
    params: int
    train_flops_per_sample: float
    tokens_per_sample: int  # 0 for models that do not consume token sequences


# ----------------------------------------------------------------------------------------- MLP


class MLP(nn.Module):
    """``depth`` blocks of Linear(width, width) + GELU on a ``width``-wide input, then a
    Linear(width, out_dim) head. Regression target: the output of a fixed random teacher."""

    def __init__(self, width: int, depth: int, out_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.head = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = F.gelu(layer(x))
        return self.head(x)


def mlp_params(width: int, depth: int, out_dim: int) -> int:
    """Exact parameter count: weights and biases of every Linear."""
    return depth * (width * width + width) + width * out_dim + out_dim


def mlp_train_flops_per_sample(width: int, depth: int, out_dim: int) -> float:
    """Training FLOPs of one sample: 3 x forward (backward = 2 x forward), forward = 2 FLOPs
    per multiply-accumulate of every Linear weight: ``6 * (depth*width^2 + width*out_dim)``.
    Biases and activations are not counted (they are not matrix work)."""
    return 6.0 * (depth * width * width + width * out_dim)


# ----------------------------------------------------------------------------------------- GPT


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

    PIPELINE_FIRST = ("embed",)  # kept by the first pipeline stage only (benchbench.models.presets)
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


def gpt_params(layers: int, hidden: int, heads: int, seq_len: int, vocab: int) -> int:
    """Exact parameter count. Per block: q, k, v, proj (4h^2 + 4h), fc1/fc2 (8h^2 + 5h), two
    LayerNorms (4h): 12h^2 + 13h. Plus embeddings (V + T)h, final LayerNorm 2h, head Vh."""
    del heads  # the split into heads does not change the count
    return layers * (12 * hidden * hidden + 13 * hidden) + (vocab + seq_len) * hidden + 2 * hidden + vocab * hidden


def gpt_train_flops_per_sample(layers: int, hidden: int, heads: int, seq_len: int, vocab: int) -> float:
    """Training FLOPs of one sequence of ``T = seq_len`` tokens, 3 x forward.

    Forward, per layer: the dense matmuls q, k, v, proj and the 4x MLP are
    ``2 * T * 12h^2 = 24 T h^2``; attention scores (QK^T) and the weighted sum (AV) are
    ``2 * 2 * T^2 * h`` in full, of which causal masking needs half: ``2 T^2 h``. The LM head is
    ``2 T h V``. Embedding look-ups, LayerNorm, softmax and GELU are not counted (no matmul), and
    the embedding tables are not matmul weights, so they add no FLOPs.

        train_flops = 3 * (layers * (24 T h^2 + 2 T^2 h) + 2 T h V)
    """
    del heads
    t, h = seq_len, hidden
    return 3.0 * (layers * (24 * t * h * h + 2 * t * t * h) + 2 * t * h * vocab)


# ----------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Architecture:
    """How to build one architecture and describe it analytically."""

    build: Callable[..., nn.Module]
    params: Callable[..., int]
    train_flops_per_sample: Callable[..., float]
    size_keys: tuple[str, ...]
    sequence: bool  # consumes token sequences (seq_len, tokens/s)
    task: Callable[[dict[str, Any], int], SyntheticTask]  # (model config, seed) -> its seeded task
    # forward FLOPs per sample of (the first stage's extras, one block, the last stage's extras):
    # the pipeline's FLOP share (benchbench.costmodel.tensors.flop_share); None: not split
    stage_flops: Callable[..., tuple[float, float, float]] | None = None
    # saved-activation bytes of a rank: (model config, its stages, n_stages, batch, forwards, tp)
    activations: Callable[..., float] | None = None


ARCHITECTURES: dict[str, Architecture] = {
    "mlp": Architecture(
        MLP,
        mlp_params,
        mlp_train_flops_per_sample,
        ("width", "depth", "out_dim"),
        sequence=False,
        task=TeacherRegression.for_model,
    ),
    "gpt": Architecture(
        GPT,
        gpt_params,
        gpt_train_flops_per_sample,
        ("layers", "hidden", "heads", "seq_len", "vocab"),
        sequence=True,
        task=MarkovTokens.for_model,
    ),
    "llama": Architecture(
        llama.Llama,
        llama.llama_params,
        llama.llama_train_flops_per_sample,
        ("layers", "hidden", "heads", "kv_heads", "ffn_hidden", "vocab", "seq_len", "rope_theta"),
        sequence=True,
        task=llama.llama_task,
        stage_flops=llama.llama_stage_flops,
        activations=llama.llama_activations,
    ),
    "vit": Architecture(
        vit.ViT,
        vit.vit_params,
        vit.vit_train_flops_per_sample,
        ("image_size", "patch", "channels", "layers", "hidden", "heads", "mlp_hidden", "classes"),
        sequence=False,
        task=vit.ImageClasses.for_model,
        stage_flops=vit.vit_stage_flops,
        activations=vit.vit_activations,
    ),
    "custom": Architecture(  # the user's entry point (benchbench.models.custom): its keys are names
        custom.build,
        custom.params,
        custom.train_flops_per_sample,
        ("entry", "path"),
        sequence=False,
        task=custom.CustomTask.for_model,
    ),
}


def model_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a model, in forward order: its FSDP units, and the units activation
    checkpointing and compilation wrap. Every transformer keeps them in a ``ModuleDict`` ``blocks``
    (:mod:`benchbench.models.presets`), the MLP in ``layers``; a model with neither has none."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        blocks = getattr(model, "layers", None)
    if blocks is None:
        return []
    return list(blocks.values()) if isinstance(blocks, nn.ModuleDict) else list(blocks)


def size_args(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """The architecture's size settings from a model config (``arch`` and extras dropped): integers,
    but a custom model's entry point and path (strings)."""
    arch = ARCHITECTURES[model_cfg["arch"]]
    return {k: model_cfg[k] if isinstance(model_cfg[k], str) else int(model_cfg[k]) for k in arch.size_keys}


def build_model(model_cfg: dict[str, Any], device: torch.device | str = "meta") -> nn.Module:
    """Build the module for a model config, by default on the ``meta`` device (shapes only, no
    memory): plans shard it first, then :func:`init_weights` fills what each rank holds."""
    with torch.device(device):
        return ARCHITECTURES[model_cfg["arch"]].build(**size_args(model_cfg))


# ------------------------------------------------------------------------------ initial weights


def param_generator(seed: int, name: str) -> torch.Generator:
    """The CPU generator of parameter ``name``'s initial value: seeded by (seed, name) alone, so a
    parameter starts equal in every plan, whatever else is built, sharded or pruned."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") % 2**63)


def initial_value(module: nn.Module, leaf: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """The full (unsharded) initial value of ``module``'s parameter ``leaf``, on the CPU, with
    torch's default distributions: Linear U(±1/√fan_in) (weight and bias), Embedding N(0, 1),
    LayerNorm weight 1 and bias 0."""
    if hasattr(module, "initial_value"):  # a module of benchbench.models.presets that states its own rule
        return module.initial_value(leaf, shape, g)
    out = torch.empty(shape)
    if isinstance(module, nn.Linear):
        bound = 1 / math.sqrt(module.in_features)
        return out.uniform_(-bound, bound, generator=g)
    if isinstance(module, nn.Embedding):
        return out.normal_(0.0, 1.0, generator=g)
    if isinstance(module, nn.LayerNorm):
        return out.fill_(1.0 if leaf == "weight" else 0.0)
    raise TypeError(f"no initialisation rule for {type(module).__name__}.{leaf}")


@torch.no_grad()
def init_weights(model: nn.Module, seed: int) -> nn.Module:
    """Fill every parameter ``model`` holds (already materialised, e.g. ``to_empty``) with its
    seeded initial value, one parameter at a time. A sharded parameter (DTensor: FSDP2, tensor
    parallel, both) gets only its local shard: the full value is generated on the CPU and
    ``distribute_tensor`` (without communication: every rank generates the same value) cuts this
    rank's piece, so at most one unsharded parameter exists at a time. Call before any wrapper
    renames parameters (DDP); the names are the unwrapped model's (a pipeline stage keeps them; a
    compiled block's ``_orig_mod`` is dropped)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    for mod_name, module in model.named_modules():
        for leaf, p in module.named_parameters(recurse=False):
            name = f"{mod_name}.{leaf}" if mod_name else leaf
            name = ".".join(c for c in name.split(".") if c != "_orig_mod")  # torch.compile's wrapper
            full = initial_value(module, leaf, tuple(p.shape), param_generator(seed, name))
            if isinstance(p, DTensor):
                local = distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None).to_local()
                p._local_tensor.copy_(local)
            else:
                p.copy_(full)
    return model


def materialize(model: nn.Module, device: torch.device, seed: int) -> nn.Module:
    """Allocate a meta-built (and possibly sharded) model's parameters on ``device`` — only what
    this rank holds — and initialise them (:func:`init_weights`)."""
    return init_weights(model.to_empty(device=device), seed)


def make_task(model_cfg: dict[str, Any], seed: int) -> SyntheticTask:
    """The seeded synthetic task that trains a model config's architecture."""
    return ARCHITECTURES[model_cfg["arch"]].task(model_cfg, seed)


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
