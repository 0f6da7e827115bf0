"""Float8 training: every eligible ``nn.Linear`` swapped for torchao's ``Float8Linear``, whose
three matmuls (output, input gradient, weight gradient) run as ``torch._scaled_mm`` on float8
tensor cores with dynamic scales (Micikevicius et al., "FP8 Formats for Deep Learning", 2022).
Applied as torchtitan's ``Float8LinearConverter``
(``torchtitan/components/quantization/float8.py``): ``convert_to_float8_training`` with the
``rowwise`` recipe, converting only Linears whose in and out features are multiples of 16 (the
float8 tensor cores' requirement) and not the LM head (torchtitan's configs filter ``output``,
its head), before the other steps, on the ``meta`` device.

Lossy: the matmuls round to float8, so the correctness gate judges the plan with the lossy
verdict and records its deviation. GPU-only: torchao and compute capability >= 8.9
(:mod:`~benchbench.spec.gpu_features`).
"""

from __future__ import annotations

from torch import nn

#: Linear modules kept in high precision (fully-qualified name substrings).
FILTER_FQNS = ("head",)
RECIPE = "rowwise"


def keep_in_float8(module: nn.Module, fqn: str) -> bool:
    """torchtitan's ``module_filter_fn``: convert a Linear whose dimensions are multiples of 16
    and whose name matches none of :data:`FILTER_FQNS`."""
    if not isinstance(module, nn.Linear):
        return False
    dims = module.in_features % 16 == 0 and module.out_features % 16 == 0
    return dims and not any(f in fqn for f in FILTER_FQNS)


def apply_float8(model: nn.Module) -> nn.Module:
    """Swap ``model``'s eligible Linears for ``Float8Linear`` in place (torchao)."""
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    config = Float8LinearConfig.from_recipe_name(RECIPE)
    return convert_to_float8_training(model, config=config, module_filter_fn=keep_in_float8)
