"""Per-rank accounting of any architecture that declares its parallel layout (:mod:`benchbench.models.layout`),
read off the model built once on the ``meta`` device (shapes only: Llama 3 70B costs ~0.1 s and no
memory): the parameter tensors a pipeline stage's tensor-parallel rank holds, in registration order,
each with its FSDP unit — what :mod:`benchbench.models.tensors` derives by hand for the built-in
architectures, here from the model's own declarations (``blocks``, ``PIPELINE_FIRST`` /
``PIPELINE_LAST``, ``tp_plan``): how a custom model is accounted for, and what the analytic
derivations are checked against (tests/test_archs.py). Torch: the cost model imports it only for
a custom model (named in ``.importlinter``).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

from benchbench.models.build import build_model
from benchbench.models.tensors import Tensor, stage_layers


@cache
def _layout(cfg_json: str) -> tuple[tuple[str, tuple[int, ...], str, str], ...]:
    """(name, full shape, tensor-parallel split 'col' / 'row' / 'rep', owner) of every parameter;
    owner: 'block.<i>', 'first', 'last' (the model's pipeline ends) or 'root' (stage 0)."""
    model = build_model(json.loads(cfg_json))
    styles = model.tp_plan(False) if hasattr(model, "tp_plan") else {}
    first, last = getattr(model, "PIPELINE_FIRST", ()), getattr(model, "PIPELINE_LAST", ())
    out = []
    for mod_name, module in model.named_modules():
        style = styles.get(mod_name)
        split = "col" if isinstance(style, ColwiseParallel) else "row" if isinstance(style, RowwiseParallel) else "rep"
        for leaf, p in module.named_parameters(recurse=False):
            name = f"{mod_name}.{leaf}" if mod_name else leaf
            top = name.split(".")
            owner = "first" if top[0] in first else "last" if top[0] in last else "root"
            owner = f"block.{top[1]}" if top[0] == "blocks" else owner
            out.append((name, tuple(p.shape), split if p.dim() == 2 or split == "col" else "rep", owner))
    return tuple(out)


def meta_tensors(model_cfg: dict[str, Any], stage: int, n_stages: int, tp: int) -> list[Tensor]:
    """The parameter tensors of pipeline stage ``stage`` of ``n_stages`` as a tensor-parallel rank
    of ``tp`` holds them (column-wise: dim 0 / tp; row-wise: a weight's dim 1 / tp, its bias
    replicated), each with its FSDP unit ('block.<i>' or 'root')."""
    layout = _layout(json.dumps(model_cfg, sort_keys=True))
    layers = len({o for _, _, _, o in layout if o.startswith("block.")})
    mine = {f"block.{i}" for i in stage_layers(layers, stage, n_stages)}
    mine |= {"first", "root"} if stage == 0 else set()
    mine |= {"last"} if stage == n_stages - 1 else set()
    out = []
    for name, shape, split, owner in layout:
        if owner not in mine:
            continue
        if split == "col":
            shape = (shape[0] // tp, *shape[1:])
        elif split == "row":
            shape = (shape[0], shape[1] // tp)
        out.append(Tensor(name, shape, owner if owner.startswith("block.") else "root"))
    return out
