"""A job's temporary folder: beside its record (not /tmp: on a cluster every node's ranks must reach
it), named after the record (``.<stem>.*``), removed after — and one a killed earlier run left,
removed before (:func:`remove_stale_tmpdirs`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def remove_stale_tmpdirs(out: Path) -> None:
    """Remove what an earlier run of this job left beside its record when it was killed outright
    (SIGKILL leaves no chance to clean up): Snakemake never runs one output twice at once."""
    for stale in out.parent.glob(f".{out.stem}.*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def job_tmpdir(out: Path, tag: str = "") -> Iterator[Path]:
    """While inside: a fresh folder ``.<stem>.<tag>*`` beside the record ``out`` (its folder made
    if need be), after the stale ones of earlier runs are removed; removed on the way out."""
    remove_stale_tmpdirs(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.{tag}", dir=out.parent) as tmp:
        yield Path(tmp)
