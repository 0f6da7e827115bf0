"""Heartbeats: each rank says how far it got, the parent reads it (its watchdog, its messages).

Rank side: :func:`start` opens ``<dir>/hb/rank<R>`` and starts a daemon thread that touches the
file's mtime every :data:`LIVENESS_S` (liveness: the process lives, whatever its main thread
does); :func:`phase` and :func:`step` overwrite one fixed-width line in place (``pwrite``, a few
µs, called after the step's timing) with ``<steps done> <phase> <unix time> <last step wall s>
<pid> <host>`` (host: the rank's hostname, so the parent can name the node of a rank that went
silent). Phases: ``start``, ``rendezvous``, ``build``, ``steps`` (while the loop runs), ``after``
(probes, gate, record), ``done``.

Parent side: :func:`read_beats` reads every rank's line and liveness.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

LIVENESS_S = 1.0
_WIDTH = 96
_HOST = socket.gethostname()[:32] or "?"
_state: dict[str, object] = {"fd": None, "steps": 0, "phase": "start", "wall": 0.0}


def _write() -> None:
    fd = _state["fd"]
    if fd is None:
        return
    s = _state
    line = f"{s['steps']} {s['phase']} {time.time():.3f} {s['wall']:.6f} {os.getpid()} {_HOST}"
    os.pwrite(fd, line.ljust(_WIDTH - 1).encode()[: _WIDTH - 1] + b"\n", 0)  # type: ignore[arg-type]


def _touch() -> None:
    while True:
        time.sleep(LIVENESS_S)
        try:
            os.utime(_state["fd"])  # type: ignore[arg-type]
        except (OSError, TypeError):
            continue  # the file just moved (start again): touch the new one next time


def start(directory: str | Path, rank: int) -> None:
    """Start this rank's heartbeat file under ``directory`` and its liveness thread; called
    again (a batched launch's next job, :mod:`benchbench.rank.main`), it moves the heartbeat to the new
    ``directory``, steps back at 0 and phase ``start``, and the one liveness thread follows."""
    path = Path(directory) / "hb"
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / f"rank{rank}", os.O_RDWR | os.O_CREAT, 0o644)
    old = _state["fd"]
    _state.update(fd=fd, steps=0, phase="start", wall=0.0)
    _write()
    if old is None:
        threading.Thread(target=_touch, daemon=True, name="benchbench-heartbeat").start()
    else:
        os.close(old)  # type: ignore[arg-type]


def phase(name: str) -> None:
    """Enter phase ``name`` (no-op without :func:`start`)."""
    _state["phase"] = name
    _write()


def step(index: int, total: int, wall: float) -> None:
    """Step ``index`` (0-based) of ``total`` finished in ``wall`` seconds."""
    _state.update(steps=index + 1, wall=wall, phase="steps" if index + 1 < total else "after")
    _write()


def where() -> tuple[str, int]:
    """This rank's phase and steps done (for its error file)."""
    return str(_state["phase"]), int(_state["steps"])  # type: ignore[call-overload]


@dataclass(frozen=True)
class Beat:
    """One rank's last heartbeat, as the parent reads it."""

    rank: int
    steps: int  # steps finished
    phase: str
    time: float  # unix time of the last write
    wall: float  # the last step's wall time (s)
    pid: int
    touched: float  # unix time of the last liveness touch
    host: str = ""  # the rank's hostname ("" from a heartbeat written without it)

    def alive(self, now: float | None = None) -> bool:
        """Whether the liveness thread touched the file lately."""
        return (now or time.time()) - self.touched < 4 * LIVENESS_S

    def at(self) -> str:
        """``at step 3`` while stepping, else ``during <phase>``."""
        if self.phase == "steps":
            return f"at step {self.steps}"
        return "after the steps" if self.phase == "after" else f"during {self.phase}"


def read_beats(directory: str | Path) -> dict[int, Beat]:
    """Every rank's last heartbeat under ``directory`` (lines being rewritten are skipped)."""
    beats = {}
    for path in Path(directory, "hb").glob("rank*"):
        try:
            fields = path.read_text().split()
            rank = int(path.name[4:])
            beats[rank] = Beat(
                rank,
                int(fields[0]),
                fields[1],
                float(fields[2]),
                float(fields[3]),
                int(fields[4]),
                path.stat().st_mtime,
                fields[5] if len(fields) > 5 else "",
            )
        except (OSError, ValueError, IndexError):
            continue
    return beats
