"""Collective communication: nccl-tests' conventions and the α-β cost of each collective.

**Sizes and bandwidths** follow nccl-tests' PERFORMANCE.md: the *size* S of an operation is its
payload (all-reduce, broadcast, reduce-scatter: the input; all-gather: the whole output; send:
the sent tensor); algbw = S / t; busbw = algbw × the collective's bus factor for n ranks
(:data:`BUS_FACTOR`), the bandwidth each rank's link sustains with an optimal algorithm, so busbw
compares across collectives and group sizes.

**Time** of one operation of size S over n ranks: ``t = α · steps(kind, n) + S · factor(kind, n) / B``
— a per-message latency α paid ``steps`` times (:data:`LATENCY_STEPS`) and the bus bytes at the
link's bus bandwidth B. Latency steps after Thakur, Rabenseifner & Gropp (IJHPCA 2005): ring
all-gather and reduce-scatter n−1; all-reduce as reduce-scatter + all-gather (Rabenseifner) with
recursive halving/doubling, 2·⌈log₂ n⌉; broadcast (binomial tree) ⌈log₂ n⌉; send 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

#: The collectives benchbench calibrates and models, as the record's ``comm`` rows name them.
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "send")

#: Collective kind -> nccl-tests bus factor as a function of the group size n.
BUS_FACTOR: dict[str, Callable[[int], float]] = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "all_to_all": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "send": lambda n: 1.0,
}


def _log2(n: int) -> int:
    return max(math.ceil(math.log2(n)), 1) if n > 1 else 0


#: Collective kind -> how many latency terms α one operation over n ranks pays.
LATENCY_STEPS: dict[str, Callable[[int], float]] = {
    "all_reduce": lambda n: 2 * _log2(n),
    "all_gather": lambda n: n - 1,
    "reduce_scatter": lambda n: n - 1,
    "all_to_all": lambda n: n - 1,
    "broadcast": lambda n: _log2(n),
    "send": lambda n: 1,
}


def bus_bytes(kind: str, n: int, payload: float) -> float:
    """nccl-tests' bus bytes of one operation: payload × bus factor (0 for a group of one)."""
    return 0.0 if n <= 1 else payload * BUS_FACTOR[kind](n)


def algbw(payload: float, seconds: float) -> float:
    """nccl-tests' algorithm bandwidth, bytes/s: size / time."""
    return payload / seconds


def busbw(kind: str, n: int, payload: float, seconds: float) -> float:
    """nccl-tests' bus bandwidth, bytes/s: algbw × bus factor."""
    return algbw(payload, seconds) * BUS_FACTOR[kind](n)


def alpha_beta_time(kind: str, n: int, payload: float, alpha_s: float, bus_bandwidth: float) -> float:
    """Seconds of one ``kind`` operation moving ``payload`` bytes over ``n`` ranks: α · steps +
    bus bytes / bus bandwidth (module docstring); 0 for a group of one."""
    if n <= 1 or payload <= 0:
        return 0.0
    return alpha_s * LATENCY_STEPS[kind](n) + bus_bytes(kind, n, payload) / bus_bandwidth
