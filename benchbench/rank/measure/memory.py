"""Memory that shows sharding: what one rank holds, measured exactly.

Measured (per rank; the job reports the max over ranks):

* :func:`model_state_bytes` — the bytes of every tensor the rank holds as model state after a
  step: parameters (a DTensor's local shard), gradients, optimizer state (every tensor in
  ``optimizer.state``, and in ZeRO-1's inner, sharded optimizer). Counted by storage, each once
  (DDP's ``gradient_as_bucket_view``, FSDP2's padded shards and views share storages);
* :class:`SavedActivations` — the bytes autograd saves for backward during one step
  (``saved_tensors_hooks``): storages counted once, parameters and their views/casts not counted;
  in all (``activation_bytes``) and the most held at once (``activation_peak_bytes``: packed and
  not yet released by autograd, the max of the running sum);
* :func:`reset_peak` / :func:`read_peak_mb` — the process peak after set-up and warm-up: on CPU
  the kernel's high-water mark of the resident set (VmHWM), reset by writing ``5`` to
  ``/proc/self/clear_refs``; on CUDA the allocator's peak after ``reset_peak_memory_stats``.

The analytic estimates reported beside them (no model built, no torch) are
:mod:`benchbench.costmodel.memory`'s.
"""

from __future__ import annotations

import resource
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

CLEAR_REFS = "/proc/self/clear_refs"
STATUS = "/proc/self/status"

# --------------------------------------------------------------------------------- peak memory


def reset_peak(device: torch.device) -> str:
    """Reset the process's peak memory now; returns the source :func:`read_peak_mb` will read:
    ``cuda_allocator``, ``rss_hwm_reset`` (the kernel's peak RSS, reset), or ``rss`` where
    ``/proc/self/clear_refs`` is not writable (getrusage's peak since the process started)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_allocator"
    try:
        with open(CLEAR_REFS, "w") as f:
            f.write("5")  # Linux: reset the peak resident set size to the current one
    except OSError:
        return "rss"
    return "rss_hwm_reset"


def read_peak_mb(device: torch.device, source: str) -> float:
    """The peak since :func:`reset_peak` (which returned ``source``), in MiB."""
    if source == "cuda_allocator":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if source == "rss_hwm_reset":
        with open(STATUS) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ------------------------------------------------------------------------- model-state bytes


def local(t: torch.Tensor) -> torch.Tensor:
    """The part of ``t`` this rank holds: a DTensor's local shard, else ``t``."""
    return t._local_tensor if hasattr(t, "_local_tensor") else t


class StorageCounter:
    """Bytes of distinct storages: a storage seen twice (views, bucket views) counts once."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def add(self, t: torch.Tensor | None) -> int:
        """Count ``t``'s storage if not seen yet; returns the bytes added."""
        if t is None or not isinstance(t, torch.Tensor):
            return 0
        storage = local(t).untyped_storage()
        if storage.nbytes() == 0 or storage.data_ptr() in self.seen:
            return 0
        self.seen.add(storage.data_ptr())
        return storage.nbytes()


def _optimizers(optimizer: torch.optim.Optimizer) -> list[torch.optim.Optimizer]:
    """The optimizer and, for ZeRO-1 (``ZeroRedundancyOptimizer``), the inner one holding the shard's state."""
    inner = getattr(optimizer, "optim", None)
    return [optimizer, *([inner] if isinstance(inner, torch.optim.Optimizer) else [])]


def model_state_bytes(modules: Iterable[nn.Module], optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of parameters, gradients and optimizer state this rank holds (storages counted once,
    in that order), and their sum: ``param_bytes``, ``grad_bytes``, ``optim_state_bytes``,
    ``model_state_bytes``."""
    counter = StorageCounter()
    params = [p for m in modules for p in m.parameters()]
    out = {
        "param_bytes": sum(counter.add(p) for p in params),
        "grad_bytes": sum(counter.add(p.grad) for p in params),
        "optim_state_bytes": sum(
            counter.add(v) for opt in _optimizers(optimizer) for s in opt.state.values() for v in s.values()
        ),
    }
    out["model_state_bytes"] = sum(out.values())
    return out


# ------------------------------------------------------------------------------- activations

#: Autograd nodes that pass a parameter through unchanged in value (views, casts): a tensor whose
#: history is only these, back to a parameter, is the parameter (or autocast's copy), not an activation.
_PASS_THROUGH = {
    "TBackward0",
    "TransposeBackward0",
    "ViewBackward0",
    "AliasBackward0",
    "ToCopyBackward0",
    "PermuteBackward0",
    "ExpandBackward0",
    "UnsafeViewBackward0",
}


def param_derived(t: torch.Tensor) -> bool:
    """Whether ``t`` is a parameter, a view of one, or a cast of one (autocast's bf16 copy)."""
    if isinstance(t, nn.Parameter) or isinstance(t._base, nn.Parameter):
        return True
    fn = t.grad_fn
    while fn is not None and type(fn).__name__ in _PASS_THROUGH:
        nxt = [f for f, _ in fn.next_functions if f is not None]
        if len(nxt) != 1:
            return False
        fn = nxt[0]
    return fn is not None and type(fn).__name__ == "AccumulateGrad"


class _Packed:
    """What the pack hook hands autograd in place of a saved tensor: the tensor, and a note to
    :class:`SavedActivations` when autograd drops it (the saved variable is released)."""

    __slots__ = ("key", "owner", "tensor")

    def __init__(self, tensor: torch.Tensor, owner: SavedActivations | None, key: int) -> None:
        self.tensor, self.owner, self.key = tensor, owner, key

    def __del__(self) -> None:
        if self.owner is not None:
            self.owner.release(self.key)


class SavedActivations:
    """Context manager: the bytes autograd saves for backward while it is open, storages counted
    once — in all (``bytes``: every forward in it, e.g. all micro-batches of a pipeline step) and
    at most at once (``peak_bytes``: the max over the step of the bytes packed and not yet
    released, a storage live while any saved tensor on it is held by autograd). It keeps each
    storage alive until it closes, so that a freed address reused by a later micro-batch is not
    taken for one already counted in ``bytes`` (memory is held longer inside: measure in an
    untimed step); ``held_bytes`` is what is packed and not released now."""

    def __init__(self) -> None:
        self.bytes = 0
        self.held_bytes = 0
        self.peak_bytes = 0
        self._live: dict[int, list[int]] = {}  # storage address -> [bytes, saved tensors holding it]
        self._held: list[torch.UntypedStorage] = []
        self._counter = StorageCounter()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, t: torch.Tensor) -> torch.Tensor | _Packed:
        if param_derived(t):
            return t
        storage = local(t).untyped_storage()
        if storage.nbytes() == 0:
            return t
        added = self._counter.add(t)
        if added:
            self.bytes += added
            self._held.append(storage)
        key = storage.data_ptr()
        if key not in self._live:
            self._live[key] = [storage.nbytes(), 0]
            self.held_bytes += storage.nbytes()
            self.peak_bytes = max(self.peak_bytes, self.held_bytes)
        self._live[key][1] += 1
        return _Packed(t, self, key)

    @staticmethod
    def _unpack(packed: torch.Tensor | _Packed) -> torch.Tensor:
        return packed.tensor if isinstance(packed, _Packed) else packed

    def release(self, key: int) -> None:
        """A saved tensor on the storage at ``key`` was dropped by autograd."""
        entry = self._live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.held_bytes -= entry[0]
            del self._live[key]

    def __enter__(self) -> SavedActivations:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)
        self._held.clear()


def activation_bytes(trainer: Any, batch: tuple[torch.Tensor, ...]) -> tuple[int, int]:
    """Bytes saved for backward in one extra, untimed optimizer step of ``trainer`` on ``batch``:
    in all, and at most held at once (:class:`SavedActivations`)."""
    with SavedActivations() as saved:
        trainer.train_step(*batch)
    return saved.bytes, saved.peak_bytes


def measure(trainer: Any, batch: tuple[torch.Tensor, ...], device: torch.device, peak_source: str) -> dict[str, Any]:
    """Right after the timed steps, in this order: the peak since :func:`reset_peak` (which
    returned ``peak_source``), this rank's model-state bytes (gradients and optimizer state in
    place), then the saved activations of one extra, untimed step."""
    figures: dict[str, Any] = {"peak_mem_mb": read_peak_mb(device, peak_source), "peak_mem_source": peak_source}
    figures.update({k: float(v) for k, v in model_state_bytes(trainer.modules, trainer.optimizer).items()})
    total, peak = activation_bytes(trainer, batch)
    figures["activation_bytes"], figures["activation_peak_bytes"] = float(total), float(peak)
    return figures
