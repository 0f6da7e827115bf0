"""The calibration of one hardware profile: what the cost model knows about the machine.

A calibration is one JSON file (``results/<study>/calibration/<hardware>.json``, written
atomically by ``benchbench calibrate``; :func:`from_spec` for hardware not at hand). It holds

* ``collectives``: one :class:`CollectiveFit` per collective kind and group size measured (or per
  link level, from the profile's specs): latency α and bus bandwidth B of
  :func:`~benchbench.costmodel.collectives.alpha_beta_time`; and the sweep's points (size, time,
  algbw, busbw) for the report's table and plot;
* ``compute``: per model of the study, :class:`PhasePoint` s — the measured single-rank forward,
  backward and optimizer seconds of one step at a per-rank batch — and the achieved matmul FLOP/s
  at the models' shapes (``matmul``);
* ``overlap``: the share of a collective's time hidden behind compute running at the same time
  (1: fully hidden, 0: none), measured by running both at once;
* ``compute_rates``/``memory_bandwidth``: from spec only (FLOP/s one device sustains on a model's
  matmuls per precision — ``fp32``, ``tf32``, ``bf16`` as :meth:`HardwareProfile.mfu_precision`
  names them — and bytes/s of its memory), used where no model was measured;
* ``peak_flops``/``attainable``: from spec only, the profile's dense peaks and the attainable share
  of each operation class (``gemm``, ``attention``, ``hbm``): the roofline of
  :mod:`~benchbench.costmodel.roofline` times the built-in transformers with them.

``source`` is ``measured`` or ``from spec``; every prediction made from it carries that label.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchbench.costmodel.collectives import COLLECTIVES, LATENCY_STEPS, alpha_beta_time

CALIBRATION_VERSION = 1
MEASURED = "measured"
FROM_SPEC = "from spec"
#: Share of peak FLOP/s a training step sustains, for predictions from spec where the profile gives
#: no ``attainable`` fractions or the model is not one the roofline knows (costmodel/roofline.py).
#: An assumption, not a measurement, labelled "from spec" wherever used: for comparison, torchtitan
#: reports 33 % to 39 % MFU for Llama 3.1 8B with FSDP on 8 and 128 H100s, with and without
#: torch.compile, against the SXM peak on 500 W HBM2e parts (pytorch/torchtitan,
#: benchmarks/llama3_h100_202412_torchtitan.md). A profile may set its own ``spec_compute_efficiency``.
SPEC_COMPUTE_EFFICIENCY = 0.45
#: Bytes AdamW moves per fp32 parameter in its update: reads parameter, gradient and two moments
#: (16), writes parameter and two moments (12). The optimizer step is memory-bound.
ADAMW_BYTES_PER_PARAM = 28


@dataclass(frozen=True)
class CollectivePoint:
    """One measured size of a collective sweep (nccl-tests' columns)."""

    kind: str
    group_size: int
    payload_bytes: float  # nccl-tests "size"
    time_s: float  # median over iterations, slowest rank
    algbw: float  # bytes/s
    busbw: float  # bytes/s


@dataclass(frozen=True)
class CollectiveFit:
    """α-β parameters of one collective over ``group_size`` ranks (0: any size; from spec).

    ``level`` is ``intra`` (every rank of the group on one node) or ``inter`` (the group spans
    nodes: the slower link)."""

    kind: str
    group_size: int
    alpha_s: float  # latency of one message
    bus_bandwidth: float  # bytes/s
    level: str = "intra"
    source: str = MEASURED

    def time(self, n: int, payload: float) -> float:
        """α-β seconds of one operation of ``payload`` bytes over ``n`` ranks with this fit."""
        return alpha_beta_time(self.kind, n, payload, self.alpha_s, self.bus_bandwidth)


@dataclass(frozen=True)
class PhasePoint:
    """The measured single-rank step of one model at one per-rank batch, split by phase."""

    batch: int
    forward_s: float  # forward and loss
    backward_s: float
    optimizer_s: float  # optimizer.step + zero_grad


@dataclass
class Calibration:
    """Everything the cost model knows about one hardware profile (module docstring)."""

    hardware: str
    source: str  # MEASURED or FROM_SPEC
    threads_per_rank: int = 1
    cpu_count: int | None = None  # cores of the host (CPU: ranks x threads beyond it share cores)
    device: str = "cpu"
    collectives: list[CollectiveFit] = field(default_factory=list)
    points: list[CollectivePoint] = field(default_factory=list)
    compute: dict[str, list[PhasePoint]] = field(default_factory=dict)  # model label -> points
    model_cfgs: dict[str, dict[str, Any]] = field(default_factory=dict)  # model label -> its config
    matmul: list[dict[str, Any]] = field(default_factory=list)  # {m, n, k, dtype, flops_per_s}
    overlap: float = 0.0
    compute_rates: dict[str, float | None] = field(default_factory=dict)  # precision -> FLOP/s, from spec
    memory_bandwidth: float | None = None  # bytes/s, from spec (× the profile's attainable hbm fraction)
    peak_flops: dict[str, float | None] = field(default_factory=dict)  # precision -> dense peak FLOP/s, from spec
    attainable: dict[str, float] = field(default_factory=dict)  # gemm, attention, hbm -> share of peak, from spec
    env: dict[str, Any] = field(default_factory=dict)  # provenance, as a record's env
    created_at: str = ""

    def fit(self, kind: str, n: int, level: str = "intra") -> CollectiveFit:
        """The fit for ``kind`` over ``n`` ranks: the measured group size n itself, else the
        largest measured one (its α and B carried to n through the latency steps; so a fit at 2-4
        ranks predicts 4,096 ranks, labelled as an extrapolation by the caller), else the spec
        fit of ``level``. Raises ``KeyError`` naming what is missing."""
        mine = [f for f in self.collectives if f.kind == kind]
        exact = [f for f in mine if f.group_size == n and f.level == level]
        if exact:
            return exact[0]
        at_level = [f for f in mine if f.level == level] or mine
        if not at_level:
            kinds = sorted({f.kind for f in self.collectives})
            raise KeyError(f"calibration of {self.hardware} has no fit for {kind}; has {kinds}")
        return max(at_level, key=lambda f: f.group_size)

    def collective_time(self, kind: str, n: int, payload: float, level: str = "intra") -> float:
        """Seconds of one ``kind`` operation of ``payload`` bytes over ``n`` ranks."""
        if n <= 1 or payload <= 0:
            return 0.0
        return self.fit(kind, n, level).time(n, payload)

    def to_dict(self) -> dict[str, Any]:
        """The calibration file's JSON, with its ``calibration_version``."""
        return {"calibration_version": CALIBRATION_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """The calibration of a file's JSON; ``ValueError`` for another ``calibration_version``."""
        d = dict(d)
        version = d.pop("calibration_version", None)
        if version != CALIBRATION_VERSION:
            raise ValueError(f"calibration_version {version!r}; this benchbench reads {CALIBRATION_VERSION}")
        d["collectives"] = [CollectiveFit(**f) for f in d.get("collectives", [])]
        d["points"] = [CollectivePoint(**p) for p in d.get("points", [])]
        d["compute"] = {m: [PhasePoint(**p) for p in pts] for m, pts in d.get("compute", {}).items()}
        return cls(**d)


def write_calibration(cal: Calibration, path: Path) -> None:
    """Write ``cal`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(cal.to_dict(), f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def write_failed_calibration(path: Path, hardware: str, reason: str, retry_of: str = "") -> None:
    """Write, atomically, the record of a calibration that failed (``status: failed`` and why) in
    place of the calibration, so that the workflow's predict and report still run (they say it is
    not usable); ``read_calibration`` refuses it with the reason."""
    doc = {
        "calibration_version": CALIBRATION_VERSION,
        "status": "failed",
        "hardware": hardware,
        "reason": reason,
        "retry_of": retry_of,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_calibration(path: Path) -> Calibration:
    """The calibration in ``path``; ``ValueError`` naming the file when it is not one (a failed
    calibration's record: with its reason)."""
    try:
        doc = json.loads(Path(path).read_text())
        if isinstance(doc, dict) and doc.get("status") == "failed":
            raise ValueError(f"the calibration failed: {doc.get('reason', 'no reason recorded')}")
        return Calibration.from_dict(doc)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path}: not a usable calibration: {e}") from e


def from_spec(name: str, profile: Any) -> Calibration:
    """A calibration from a hardware profile's specs alone (hardware not at hand): α-β per
    collective from ``intra_node`` and ``inter_node`` (latency_us, bandwidth_gbps per direction
    = bus bandwidth), compute from the dense peaks and the profile's ``attainable`` fractions (the
    roofline, :mod:`~benchbench.costmodel.roofline`), else the dense peak ×
    ``SPEC_COMPUTE_EFFICIENCY`` (the profile's ``spec_compute_efficiency`` if set), optimizer from
    ``memory_bandwidth_gbps`` (× the attainable ``hbm`` fraction where given), overlap 1
    (a GPU's communication kernels run beside compute). ``ValueError`` when a figure is missing."""
    fits = []
    for level, link in (("intra", profile.intra_node), ("inter", profile.inter_node)):
        bw, lat = link.get("bandwidth_gbps"), link.get("latency_us")
        if bw is None or lat is None:
            raise ValueError(f"hardware profile {name}: {level}_node has no bandwidth_gbps/latency_us; calibrate it")
        fits += [CollectiveFit(k, 0, lat * 1e-6, bw * 1e9, level, FROM_SPEC) for k in COLLECTIVES]
    if all(v is None for v in profile.peak_flops.values()):
        raise ValueError(f"hardware profile {name}: no peak_flops; calibrate it")
    efficiency = profile.spec_compute_efficiency or SPEC_COMPUTE_EFFICIENCY
    rates = {k: (v * efficiency if v is not None else None) for k, v in profile.peak_flops.items()}
    attainable = {k: float(v["fraction"]) for k, v in (profile.attainable or {}).items()}
    mem_bw = profile.memory_bandwidth_gbps
    return Calibration(
        hardware=name,
        source=FROM_SPEC,
        device=profile.device,
        collectives=fits,
        overlap=1.0,
        compute_rates=rates,
        memory_bandwidth=mem_bw * 1e9 * attainable.get("hbm", 1.0) if mem_bw else None,
        peak_flops=dict(profile.peak_flops),
        attainable=attainable,
    )


__all__ = [
    "ADAMW_BYTES_PER_PARAM",
    "CALIBRATION_VERSION",
    "FROM_SPEC",
    "LATENCY_STEPS",
    "MEASURED",
    "Calibration",
    "CollectiveFit",
    "CollectivePoint",
    "PhasePoint",
    "from_spec",
    "read_calibration",
    "write_calibration",
    "write_failed_calibration",
]
