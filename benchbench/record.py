"""The run record: one JSON document per job (DESIGN.md, "The run record").

Records are validated against ``workflow/schemas/record.schema.yaml`` and written atomically
(temporary file in the same folder, fsync, rename), so a reader never sees half a record.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchbench.config import load_schema

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "infeasible")

SUMMARY_KEYS = (
    "step_time_median_s",
    "step_time_p10_s",
    "step_time_p90_s",
    "step_time_cv",
    "samples_per_s",
    "tokens_per_s",
    "model_tflops_per_rank",
    "mfu",
    "peak_mem_mb",
    "peak_mem_source",
    "comm_bytes_per_step",
    "comm_bytes_source",
    "exposed_comm_fraction",
    "bubble_fraction_measured",
    "bubble_fraction_theoretical",
    "params",
    "train_flops_per_sample",
)


def make_record(
    job: dict[str, Any],
    status: str,
    error: str | None = None,
    env: dict[str, Any] | None = None,
    step_time_s: list[float] | None = None,
    loss: list[float] | None = None,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete record; missing summary figures are ``null``."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} not in {STATUSES}")
    return {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": status,
        "error": error,
        "job": copy.deepcopy(job),
        "env": env or {},
        "step_time_s": step_time_s or [],
        "loss": loss or [],
        "summary": {k: (summary or {}).get(k) for k in SUMMARY_KEYS},
    }


def validate_record(record: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``record`` does not fit the record schema."""
    import jsonschema

    jsonschema.validate(record, load_schema("record"), cls=jsonschema.Draft202012Validator)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(path: str | Path) -> dict[str, Any]:
    """Load one record."""
    return json.loads(Path(path).read_text())


def write_record(record: dict[str, Any], path: str | Path) -> Path:
    """Validate and atomically write ``record`` to ``path``; returns where it went.

    A record that is not ``ok`` never replaces an ``ok`` record already at ``path``: it goes to
    ``<stem>.failed.json`` beside it, and the good result stays."""
    validate_record(record)
    path = Path(path)
    if record["status"] != "ok" and path.exists():
        try:
            previous_ok = read_record(path).get("status") == "ok"
        except (OSError, ValueError):
            previous_ok = False
        if previous_ok:
            path = path.with_name(path.stem + ".failed.json")
    atomic_write_text(path, json.dumps(record, indent=1, allow_nan=False) + "\n")
    return path
