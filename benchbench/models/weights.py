"""Initial weights: every parameter starts from a value seeded by (seed, its name) alone, so a
parameter starts equal in every plan, whatever else is built, sharded or pruned; a meta-built model
is materialised on a device with only what the rank holds (:func:`materialize`)."""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn


def param_generator(seed: int, name: str) -> torch.Generator:
    """The CPU generator of parameter ``name``'s initial value: seeded by (seed, name) alone, so a
    parameter starts equal in every plan, whatever else is built, sharded or pruned."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") % 2**63)


def initial_value(module: nn.Module, leaf: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """The full (unsharded) initial value of ``module``'s parameter ``leaf``, on the CPU, with
    torch's default distributions: Linear U(±1/√fan_in) (weight and bias), Embedding N(0, 1),
    LayerNorm weight 1 and bias 0."""
    if hasattr(module, "initial_value"):  # a module (llama, vit, a custom one) that states its own rule
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
