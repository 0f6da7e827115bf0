"""``torch.compile`` per transformer block, as torchtitan's ``apply_compile`` does, and the
compiler's own accounting of what it compiled and for how long.

:func:`apply_compile` replaces every block of a (stage) module by ``torch.compile(block,
fullgraph=True)`` (an ``OptimizedModule`` wrapping it: its parameter names gain ``_orig_mod``,
which :func:`benchbench.models.weights.init_weights` and the gate's ``canonical_name`` drop). It runs
after tensor parallel and activation checkpointing and before the data-parallel wrapper
(:mod:`~benchbench.strategies.parallelize`), so the wrapper's hooks (DDP's, FSDP2's per-block
all-gathers) stay outside the compiled graphs, as in torchtitan. Compilation itself is lazy: it
happens in the first warm-up step, forward at the first call, backward at the first backward.
With torch's ``inline_inbuilt_nn_modules`` (default) the blocks share one compiled graph.

:func:`compile_counters` reads torch's compile-time registry
(``torch._dynamo.utils.compilation_time_metrics``): the number and total seconds of dynamo frame
compilations (``_compile.compile_inner``: tracing, AOT autograd and the inductor forward) and of
the lazy backward compilations (``compile_fx.<locals>.bw_compiler``). The timed loop
(:mod:`benchbench.rank.loop`) reads it before the first step, after the warm-up and after the last
timed step: ``compile_time_s`` and ``compile_events_timed`` (docs/METRICS.md).
"""

from __future__ import annotations

from torch import nn

#: torch's names (in ``compilation_time_metrics``) of the two kinds of compile event.
COMPILE_EVENTS = ("_compile.compile_inner", "compile_fx.<locals>.bw_compiler")


def apply_compile(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Compile each transformer block of ``module`` (a model or a pipeline stage) in place of the
    block when ``enabled`` (the plan's ``compile``); returns ``module``."""
    import torch

    if not enabled:
        return module
    for name, block in list(module.blocks.items()):
        module.blocks[name] = torch.compile(block, fullgraph=True)
    return module


def compiled_blocks(modules: list[nn.Module]) -> int:
    """How many compiled modules (``OptimizedModule``) the given modules hold."""
    from torch._dynamo.eval_frame import OptimizedModule

    return sum(isinstance(m, OptimizedModule) for top in modules for m in top.modules())


def compile_counters() -> tuple[int, float]:
    """(compile events, their seconds) this process has run so far, by torch's own accounting."""
    from torch._dynamo.utils import compilation_time_metrics as metrics

    events = [metrics.get(name, []) for name in COMPILE_EVENTS]
    return sum(len(e) for e in events), float(sum(sum(e) for e in events))
