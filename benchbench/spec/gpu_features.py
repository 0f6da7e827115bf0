"""Why a device cannot run a plan's GPU-only steps — context parallel, async TP, float8 — checked
at study expansion (:func:`benchbench.spec.job.job_infeasible_reason`), so such a job is dropped with
its reason instead of launched to fail. No torch import: expansion stays cheap.

What each needs, and how the CPU reasons were checked (torch 2.13.0+cpu, gloo, 2 ranks; the
scripts are described in the README's strategy table notes):

* context parallel — torch's ring attention (``torch.distributed.tensor.experimental.context_parallel``)
  registers sharding rules only for the CUDA SDPA kernels (flash, memory-efficient, cuDNN). On CPU,
  ``F.scaled_dot_product_attention`` inside the context raised ``NotImplementedError: Operator
  aten._scaled_dot_product_flash_attention_for_cpu.default does not have a sharding strategy
  registered``; forcing the math backend raised ``aten.add.Tensor got mixed torch.Tensor and
  DTensor``.
* async TP — Inductor's micro-pipeline TP pass (torchtitan ``_maybe_enable_async_tp``) runs the
  fused all-gather-matmul / matmul-reduce-scatter ops on symmetric memory. On CPU,
  ``torch.distributed._symmetric_memory.empty(..., device="cpu")`` raised ``RuntimeError:
  SymmetricMemory does not support device type cpu``.
* float8 — torchao's ``convert_to_float8_training`` swaps Linear for Float8Linear, whose matmuls are
  ``torch._scaled_mm`` on float8 tensor cores: CUDA compute capability >= 8.9 (Ada, Hopper; torchao
  README). torchao is also an optional dependency; where it is not installed in the environment
  that expands the study (the one that launches its jobs), the job is dropped naming it.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchbench.spec.hardware import HardwareProfile
    from benchbench.spec.plan import Plan

#: float8 tensor cores: compute capability 8.9 (Ada) and 9.0 (Hopper) and later.
FLOAT8_MIN_COMPUTE_CAPABILITY = 8.9


def torchao_available() -> bool:
    """Whether torchao can be imported here (without importing it)."""
    return importlib.util.find_spec("torchao") is not None


def _float8_reason(hw: HardwareProfile) -> str | None:
    if hw.device != "cuda":
        return (
            f"float8: needs float8 tensor cores (CUDA, compute capability >= {FLOAT8_MIN_COMPUTE_CAPABILITY}) "
            f"for torch._scaled_mm; device is {hw.device}"
        )
    cc = hw.compute_capability
    if cc is None or cc < FLOAT8_MIN_COMPUTE_CAPABILITY:
        return (
            f"float8: needs compute capability >= {FLOAT8_MIN_COMPUTE_CAPABILITY} (float8 tensor cores); "
            f"the hardware profile gives compute_capability = {cc}"
        )
    if not torchao_available():
        return "float8: torchao (convert_to_float8_training) is not installed in this environment: pip install torchao"
    return None


def device_reason(plan: Plan, hw: HardwareProfile) -> str | None:
    """Why the device and backend of ``hw`` cannot run ``plan``'s GPU-only steps, else ``None``."""
    if plan.cp > 1 and hw.device != "cuda":
        return (
            f"context parallel (cp = {plan.cp}): torch's ring attention (context_parallel) shards only the CUDA "
            f"SDPA kernels; on {hw.device} aten._scaled_dot_product_flash_attention_for_cpu has no sharding "
            "strategy (NotImplementedError)"
        )
    if plan.async_tp and (hw.device != "cuda" or hw.backend != "nccl"):
        return (
            f"async_tp: needs symmetric memory (CUDA, nccl); on {hw.device}/{hw.backend} torch raises "
            f"'SymmetricMemory does not support device type {hw.device}'"
        )
    return _float8_reason(hw) if plan.float8 else None
