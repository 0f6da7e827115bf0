"""Asynchronous tensor parallelism: the tensor-parallel all-gathers and reduce-scatters of
sequence parallelism decomposed and overlapped with the matmuls that consume or produce them
(Wang et al., "Overlap Communication with Dependent Computation via Decomposition", ASPLOS 2023;
PyTorch's "micro-pipeline TP"). Applied as torchtitan's ``_maybe_enable_async_tp``
(``torchtitan/distributed/compile.py``): symmetric memory enabled for the TP group, Inductor's
``_micro_pipeline_tp`` pass on, and each transformer block compiled (``fullgraph=True``), which is
where the pass rewrites all-gather -> matmul into ``fused_all_gather_matmul`` and matmul ->
reduce-scatter into ``fused_matmul_reduce_scatter``. torchtitan requires compile for async TP;
here an async-TP plan compiles its blocks through the compile step
(:func:`~benchbench.strategies.compiled.apply_compile`, step 2c of
:mod:`~benchbench.strategies.parallelize`, after activation checkpointing as in torchtitan).

GPU-only: symmetric memory exists only for CUDA (:mod:`~benchbench.spec.gpu_features`).
"""

from __future__ import annotations

import warnings

from torch import nn
from torch.distributed.device_mesh import DeviceMesh


def apply_async_tp(model: nn.Module, tp_mesh: DeviceMesh) -> nn.Module:
    """Turn on async TP for a tensor-(and sequence-)parallel GPT (or pipeline stage) over
    ``tp_mesh`` (the compile step then compiles its blocks); the model may still be on ``meta``."""
    import torch._inductor.config as inductor_config
    from torch.distributed._symmetric_memory import enable_symm_mem_for_group

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated, still what torchtitan calls
        enable_symm_mem_for_group(tp_mesh.get_group().group_name)
    inductor_config._micro_pipeline_tp = True
    return model
