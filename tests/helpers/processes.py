"""Leftover processes of a job."""

from __future__ import annotations

import os
import time
from pathlib import Path


def orphans(tmp_path: Path, within: float = 3.0) -> list[str]:
    """Command lines of live processes that name ``tmp_path`` (the job's folder is inside it)."""
    deadline = time.monotonic() + within
    while True:
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(tmp_path).encode() in cmd and int(proc.name) != os.getpid():
                found.append(cmd.replace(b"\0", b" ").decode(errors="replace"))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
