"""What ties a rank's life to its parent's: :func:`die_with_parent` (no rank outlives its launcher,
no launcher outlives ``benchbench run``), :data:`STARTED_FILE` (rank 0's word to the parent that a
batched job began) and :func:`exit_now` (a process whose outputs are written ends without the
interpreter's teardown). Imported by both sides: the parent (:mod:`benchbench.launch`) and the
ranks (:mod:`benchbench.rank.main`); no torch.
"""

from __future__ import annotations

import ctypes  # here, not in die_with_parent: a child forked from a threaded parent must not take the import lock
import os
import signal
import sys

STARTED_FILE = "started"  # in a batched job's folder: rank 0's unix time when the job began


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (PR_SET_PDEATHSIG), so that no
    rank outlives its launcher; no-op elsewhere. Exits at once if the parent is already gone."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(128 + int(sig))


def exit_now(code: int) -> None:
    """Flush stdout and stderr, then end the process without the interpreter's teardown (a torch
    process spends up to seconds in it); for processes whose outputs are already written."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
