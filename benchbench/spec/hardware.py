"""Hardware profiles (``config/hardware/<name>.yaml``): what a job runs on, typed.

A profile names the device and collective backend, how many devices a node holds, the dense peak
FLOP/s per dtype (for MFU), link figures and the per-rank Slurm request. It is validated against
``workflow/schemas/hardware.schema.yaml`` once per process.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from benchbench.spec.schema import ROOT, ConfigError, non_finite, validate

HARDWARE_DIR = ROOT / "config" / "hardware"


@dataclass(frozen=True)
class HardwareProfile:
    """One hardware profile; field meanings are in ``workflow/schemas/hardware.schema.yaml``."""

    device: str
    backend: str
    devices_per_node: int
    peak_flops: dict[str, float | None]
    description: str = ""
    intra_node: dict[str, float | None] = field(default_factory=dict)
    inter_node: dict[str, float | None] = field(default_factory=dict)
    slurm: dict[str, int] = field(default_factory=dict)
    memory_gb: float | None = None  # device memory of one device (GPU) or of the host (CPU), GB
    memory_bandwidth_gbps: float | None = None  # device memory bandwidth, GB/s (cost model, from spec)
    spec_compute_efficiency: float | None = None  # share of peak a training step sustains (cost model)
    compute_capability: float | None = None  # CUDA compute capability (float8 needs >= 8.9)
    attainable: dict[str, dict[str, Any]] = field(default_factory=dict)  # gemm/attention/hbm -> fraction, source

    def peak(self, precision: str) -> float | None:
        """Dense peak FLOP/s of one device for ``precision`` (``fp32``, ``tf32``, ``bf16``, ``fp8``; see
        :meth:`mfu_precision`); ``None`` when the profile gives none."""
        return self.peak_flops.get(precision)

    def mfu_precision(self, dtype: str, fp32_matmuls: str) -> str:
        """The arithmetic a job's matmuls run in, whose peak its MFU is taken against: ``bf16``
        for bf16 jobs; for fp32 jobs on a GPU how torch runs fp32 matmuls there
        (``fp32_matmuls``: ``tf32`` where TF32 is allowed, ``bf16`` under matmul precision
        "medium"); else ``fp32``."""
        if dtype == "bf16":
            return "bf16"
        return fp32_matmuls if self.device == "cuda" else "fp32"

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HardwareProfile:
        return cls(**copy.deepcopy(d))


def hardware_names() -> list[str]:
    """The hardware profiles shipped in config/hardware/."""
    return sorted(p.stem for p in HARDWARE_DIR.glob("*.yaml"))


@cache
def _validated(path: Path) -> HardwareProfile:
    raw = yaml.safe_load(path.read_text())
    if errors := non_finite(raw):
        raise ConfigError(f"invalid hardware profile {path}:\n  " + "\n  ".join(errors))
    validate(raw, "hardware", f"hardware profile {path}")
    return HardwareProfile.from_dict(raw)


def load_hardware(name: str, key: str = "hardware") -> HardwareProfile:
    """The validated profile ``config/hardware/<name>.yaml`` (read and validated once per process).

    Raises :class:`~benchbench.spec.config.ConfigError` naming ``key`` and the shipped profiles."""
    path = HARDWARE_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"invalid study config:\n  {key}: {name!r} is not allowed; allowed: {hardware_names()}")
    return _validated(path)
