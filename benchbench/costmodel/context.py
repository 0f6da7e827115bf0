"""The rank's view the cost model's formulas share: a job with its calibration (:class:`Ctx`: the
α-β time of a collective on a mesh dimension, at the level its groups span, and what predicting
found out), the operations a family issues (:class:`Op`), one family's communication
(:class:`Part`) and one rank's composed step (:class:`RankStep`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchbench.costmodel.calibration import FROM_SPEC, Calibration
from benchbench.spec.job import Job


@dataclass(frozen=True)
class Op:
    """Collective operations of one kind on one mesh dimension, as the record's ``comm`` rows
    count them: ``calls`` operations moving ``payload`` bytes in all (nccl-tests' sizes)."""

    kind: str
    dim: str
    n: int  # group size
    calls: int
    payload: float


@dataclass
class Part:
    """One family's communication on a rank: its operations, their α-β time and the exposed part."""

    ops: list[Op] = field(default_factory=list)
    comm_s: float = 0.0
    exposed_s: float = 0.0
    extra_compute_s: float = 0.0  # compression's own compute (casts, PowerSGD's matmuls)
    text: str = ""


@dataclass
class RankStep:
    """One rank's step, composed: compute, communication, exposed part, bubble."""

    compute_s: float
    comm_s: float
    exposed_s: float
    step_s: float
    bubble: float | None
    ops: list[Op]
    terms: list[str]


@dataclass
class Ctx:
    """A job, its calibration and what predicting it found out (extrapolations, notes)."""

    job: Job
    cal: Calibration
    extrapolated: bool = False
    notes: list[str] = field(default_factory=list)

    def level(self, dim: str) -> str:
        """``intra`` when every group of mesh dimension ``dim`` lies on one node, else ``inter``.
        Ranks are laid out as parallelize.make_mesh's ``(dp, pp, cp, tp)`` mesh, tp innermost: a tp
        group spans tp consecutive ranks, a cp group tp·cp, a pp group tp·cp·pp, a dp group the
        whole world; under HSDP a ``dp_shard`` group spans dp_shard·pp·tp ranks (so a shard group
        within a node is ``intra``) and a ``dp_replicate`` group the whole world."""
        plan, per_node = self.job.plan, self.job.hardware_cfg.devices_per_node
        spans = {
            "tp": plan.tp,
            "cp": plan.tp * plan.cp,
            "pp": plan.tp * plan.cp * plan.pp,
            "dp_shard": plan.dp_shard * plan.pp * plan.tp,
        }
        span = spans.get(dim, self.job.world_size)
        return "intra" if span <= per_node else "inter"

    def time(self, kind: str, dim: str, n: int, payload: float, calls: int = 1) -> float:
        """α-β seconds of ``calls`` operations of ``payload / calls`` bytes each over ``n`` ranks
        (the calibration's fit; a send without a fit is timed as a broadcast between two ranks)."""
        if n <= 1 or payload <= 0 or calls <= 0:
            return 0.0
        level = self.level(dim)
        try:
            fit = self.cal.fit(kind, n, level)
        except KeyError:
            if kind != "send":
                raise
            fit = self.cal.fit("broadcast", 2, level)
            self.note("send timed with the broadcast fit (no send fit)")
        if self.cal.source != FROM_SPEC and (fit.group_size != n or fit.level != level):
            self.extrapolated = True
        return calls * fit.time(n, payload / calls)

    def note(self, text: str) -> None:
        """Say ``text`` once in the prediction's terms."""
        if text not in self.notes:
            self.notes.append(text)

    def op(self, kind: str, dim: str, n: int, sizes: list[float]) -> tuple[Op, float]:
        """One operation per entry of ``sizes`` (bytes): the row and its summed α-β time."""
        t = sum(self.time(kind, dim, n, s) for s in sizes)
        return Op(kind, dim, n, len(sizes), float(sum(sizes))), t

    def hidden(self, overlappable_s: float, compute_s: float) -> float:
        """Seconds of communication hidden behind ``compute_s`` of concurrent compute: the
        calibration's measured share ``overlap`` of what can overlap, at most the compute itself."""
        return min(self.cal.overlap * overlappable_s, compute_s)


def fmt_s(seconds: float) -> str:
    """Seconds for people, in s, ms or µs with 3 significant digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= scale or unit == "µs":
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"
