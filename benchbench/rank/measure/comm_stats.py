"""Counting what a rank hands to collectives, per operation and process-group dimension, by
watching the dispatcher.

Since torch 2.0 every c10d collective — issued from Python (``dist.all_reduce``, FSDP2's
all-gather / reduce-scatter, pipeline send/recv), from DTensor (functional collectives) or from
DDP's C++ reducer — is a dispatcher op, so one ``TorchDispatchMode`` sees them all (the idea of
``torch.distributed.tensor.debug.CommDebugMode``, which counts calls but not bytes).

Two conventions, side by side, both from nccl-tests' PERFORMANCE.md:

* **payload** ("size"): all-reduce, broadcast, reduce-scatter and all-to-all count their input,
  all-gather its (whole) output, point-to-point the sent tensor (receives are not counted, so
  each transfer counts once);
* **bus bytes**: payload × the collective's bus factor for a group of n ranks — all-reduce
  2(n−1)/n, all-gather, reduce-scatter and all-to-all (n−1)/n, broadcast and send 1 — the bytes
  each rank's link must carry with an optimal algorithm, so they compare across kinds and sizes.

An op the tables do not know is an error when ``strict`` (the tests set
``BENCHBENCH_STRICT_COMM=1``), a warning and a row of kind ``unknown`` otherwise; it is never
silently counted as 0. The mode intercepts every op, so it is used for one extra, untimed step.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from benchbench.costmodel.collectives import BUS_FACTOR

# op name -> (kind, index of the argument whose tensors are the payload; -1: the op's output)
_OPS: dict[str, tuple[str, int]] = {
    # c10d (ProcessGroup) ops
    "allreduce_": ("all_reduce", 0),
    "allreduce_coalesced_": ("all_reduce", 0),
    "broadcast_": ("broadcast", 0),
    "allgather_": ("all_gather", 0),  # output lists
    "_allgather_base_": ("all_gather", 0),  # output
    "allgather_into_tensor_coalesced_": ("all_gather", 0),
    "reduce_scatter_": ("reduce_scatter", 1),  # input lists
    "_reduce_scatter_base_": ("reduce_scatter", 1),  # input
    "reduce_scatter_tensor_coalesced_": ("reduce_scatter", 1),
    "alltoall_": ("all_to_all", 1),
    "alltoall_base_": ("all_to_all", 1),
    "send": ("send", 0),
    # functional collectives (DTensor)
    "all_reduce": ("all_reduce", 0),
    "all_reduce_": ("all_reduce", 0),
    "all_reduce_coalesced": ("all_reduce", 0),
    "all_reduce_coalesced_": ("all_reduce", 0),
    "all_gather_into_tensor": ("all_gather", -1),
    "all_gather_into_tensor_coalesced": ("all_gather", -1),
    "all_gather_into_tensor_out": ("all_gather", -1),
    "reduce_scatter_tensor": ("reduce_scatter", 0),
    "reduce_scatter_tensor_coalesced": ("reduce_scatter", 0),
    "all_to_all_single": ("all_to_all", 0),
    "broadcast": ("broadcast", 0),
    "isend": ("send", 0),
}
#: ``torch.distributed`` collectives counted on other threads too (:meth:`CommCounter.other_threads`).
#: Not the point-to-point functions: ``P2POp`` checks its ``op`` is ``dist.isend``/``dist.irecv`` by
#: identity (a wrapper would break pipelines), and nothing issues them from a callback.
THREAD_ENTRY_POINTS = (
    "all_reduce",
    "all_gather",
    "all_gather_into_tensor",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "broadcast",
    "all_to_all_single",
)
#: Ops that move no payload of their own (synchronisation, the receiving half of a transfer).
NO_PAYLOAD = frozenset(
    {"barrier", "monitored_barrier_", "recv_", "recv_any_source_", "irecv", "wait_tensor", "_wrap_tensor_autograd"}
)


def _nbytes(obj: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tree_leaves(obj) if isinstance(t, torch.Tensor))


def _group_name(args: tuple) -> str | None:
    """The process group an op runs on: a boxed ProcessGroup (c10d ops) or a group name (functional)."""
    from torch._C._distributed_c10d import ProcessGroup

    for a in args:
        if isinstance(a, torch.ScriptObject):
            try:
                return ProcessGroup.unbox(a).group_name
            except RuntimeError:  # another script object (a ReduceOp)
                continue
    strings = [a for a in args if isinstance(a, str)]
    return strings[-1] if strings else None


@dataclass
class CommRow:
    """One (collective kind, dimension) of a rank's step."""

    kind: str
    dim: str
    group_size: int
    calls: int = 0
    payload_bytes: float = 0.0
    bus_bytes: float = 0.0


class CommCounter(TorchDispatchMode):
    """Within the ``with`` block, count calls, payload and bus bytes per (kind, dimension).

    ``dims`` maps a process group's name to its mesh dimension (``dp``/``tp``/``pp``) and size;
    groups not in it are labelled ``world`` with the default group's size."""

    def __init__(self, dims: dict[str, tuple[str, int]] | None = None, strict: bool | None = None) -> None:
        super().__init__()
        self.dims = dims or {}
        self.strict = os.environ.get("BENCHBENCH_STRICT_COMM") == "1" if strict is None else strict
        self.rows: dict[tuple[str, str], CommRow] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.namespace in ("c10d", "_c10d_functional"):
            self._count(func._opname, args, out)
        return out

    def _count(self, name: str, args: tuple, out: Any) -> None:
        if name in NO_PAYLOAD:
            return
        if name not in _OPS:
            if self.strict:
                raise RuntimeError(f"unknown collective {name!r}: add it to comm_stats._OPS or NO_PAYLOAD")
            warnings.warn(f"benchbench: unknown collective {name!r}, its bytes are not counted", stacklevel=2)
            kind, n = "unknown", 0
        else:
            kind, arg = _OPS[name]
            n = _nbytes(out if arg < 0 else args[arg])
        dim, size = self._dim(args)
        row = self.rows.setdefault((kind, dim), CommRow(kind, dim, size))
        row.calls += 1
        row.payload_bytes += n
        row.bus_bytes += n * BUS_FACTOR[kind](size) if kind in BUS_FACTOR else 0.0

    @contextlib.contextmanager
    def other_threads(self) -> Iterator[CommCounter]:
        """Also count collectives issued from other threads while the block runs.

        A dispatch mode is thread-local: collectives issued in a future's callback (PowerSGD's P
        and Q all-reduces run in ``.then()`` callbacks on gloo's threads) escape it. Within this
        block the ``torch.distributed`` functions a hook calls by name (:data:`THREAD_ENTRY_POINTS`)
        run, on any thread but this one, under a counter of their own, whose rows are added here;
        on this thread the dispatch mode counts them as before (never twice)."""
        import torch.distributed as dist

        owner, lock = threading.get_ident(), threading.Lock()

        def wrap(fn: Any) -> Any:
            @functools.wraps(fn)
            def counted(*args: Any, **kwargs: Any) -> Any:
                if threading.get_ident() == owner:
                    return fn(*args, **kwargs)
                with CommCounter(self.dims, self.strict) as other:
                    out = fn(*args, **kwargs)
                with lock:
                    self._add(other)
                return out

            return counted

        saved = {name: getattr(dist, name) for name in THREAD_ENTRY_POINTS if hasattr(dist, name)}
        try:
            for name, fn in saved.items():
                setattr(dist, name, wrap(fn))
            yield self
        finally:
            for name, fn in saved.items():
                setattr(dist, name, fn)

    def _add(self, other: CommCounter) -> None:
        for key, r in other.rows.items():
            row = self.rows.setdefault(key, CommRow(r.kind, r.dim, r.group_size))
            row.calls += r.calls
            row.payload_bytes += r.payload_bytes
            row.bus_bytes += r.bus_bytes

    def _dim(self, args: tuple) -> tuple[str, int]:
        import torch.distributed as dist

        name = _group_name(args)
        if name in self.dims:
            return self.dims[name]
        return "world", dist.get_world_size() if dist.is_initialized() else 1

    @property
    def payload_bytes(self) -> float:
        return sum(r.payload_bytes for r in self.rows.values())

    @property
    def bus_bytes(self) -> float:
        return sum(r.bus_bytes for r in self.rows.values())

    def table(self) -> list[dict[str, Any]]:
        """The rows, sorted by dimension and kind, as plain dicts (the record's ``comm``)."""
        return [asdict(r) for _, r in sorted(self.rows.items(), key=lambda kv: (kv[0][1], kv[0][0]))]


def merge_ranks(tables: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every rank's rows into one table: per (kind, dimension) the whole row of the rank that moved
    the most payload there (pipeline stages differ: the first sends activations, the last
    gradients), so calls and bytes in a row come from one rank."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for table in tables:
        for row in table:
            key = (row["dim"], row["kind"])
            if key not in merged or row["payload_bytes"] > merged[key]["payload_bytes"]:
                merged[key] = dict(row)
    return [merged[k] for k in sorted(merged)]
