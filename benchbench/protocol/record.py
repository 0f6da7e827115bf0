"""The run record: one JSON document per job (``workflow/schemas/record.schema.yaml``;
every figure in it is defined in docs/METRICS.md).

Records are validated against ``workflow/schemas/record.schema.yaml`` and written atomically
(temporary file in the same folder, fsync, rename), so a reader never sees half a record.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

from benchbench.protocol.failure import Failure
from benchbench.spec.job import Job
from benchbench.spec.metrics import SUMMARY_NAMES
from benchbench.spec.schema import load_schema

#: 4: ``failure`` (kind, rank, signal, message, log tail; :mod:`benchbench.protocol.failure`);
#: 3: per-operation ``comm``; 2: the job is ``Job.to_dict()``.
SCHEMA_VERSION = 4
STATUSES = ("ok", "failed", "infeasible")


def make_record(
    *,
    job: Job,
    status: str,
    error: str | None = None,
    env: dict[str, Any] | None = None,
    applied: list[str] | None = None,
    comm: list[dict[str, Any]] | None = None,
    step_time_s: list[float] | None = None,
    loss: list[float] | None = None,
    summary: dict[str, Any] | None = None,
    failure: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete record; summary figures not given are ``null`` (names: :data:`~benchbench.spec.metrics.SUMMARY`).

    An ``ok`` record must hold every step: ``job.total_steps`` losses and ``job.steps`` step times,
    and has no ``failure``; a record that is not ok without one gets :func:`default_failure`'s."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} not in {STATUSES}")
    if status == "ok" and failure is not None:
        raise ValueError("an ok record has no failure")
    if status == "ok" and (len(loss or []) != job.total_steps or len(step_time_s or []) != job.steps):
        raise ValueError(
            f"an ok record needs {job.total_steps} losses and {job.steps} step times, "
            f"got {len(loss or [])} and {len(step_time_s or [])}"
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": status,
        "error": error,
        "failure": None if status == "ok" else dict(failure or default_failure(status, error)),
        "job": job.to_dict(),
        "env": dict(env or {}),
        "applied": list(applied or []),
        "comm": [dict(c) for c in comm or []],
        "step_time_s": list(step_time_s or []),
        "loss": list(loss or []),
        "summary": {k: (summary or {}).get(k) for k in SUMMARY_NAMES},
    }


def default_failure(status: str, error: str | None) -> dict[str, Any]:
    """The ``failure`` of a record not ok that was made without one: ``infeasible``, or a rank
    exception whose message is the error's first line."""
    first = (error or "").strip().splitlines()[0] if (error or "").strip() else status
    kind = "infeasible" if status == "infeasible" else "rank_exception"
    return Failure(kind, first, log_tail=error or "").to_dict()


def job_from_json(data: Any) -> Job:
    """A job from untrusted JSON (``benchbench run --spec``): checked against the record schema's
    ``job`` part first, so a bad value is named instead of failing inside the ranks."""
    import jsonschema

    job_schema = {**load_schema("record")["properties"]["job"], "$defs": load_schema("record").get("$defs", {})}
    errors = sorted(jsonschema.Draft202012Validator(job_schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        raise ValueError("; ".join(f"{'.'.join(map(str, e.path)) or 'job'}: {e.message}" for e in errors[:5]))
    return Job.from_dict(data)


def job_of(record: dict[str, Any]) -> Job:
    """The typed job of a record."""
    return Job.from_dict(record["job"])


@cache
def _record_validator() -> Any:
    """The record schema's validator, the schema itself checked once per process (checking it
    costs more than validating a record)."""
    import jsonschema

    schema = load_schema("record")
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_record(record: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``record`` does not fit the record schema (the
    most relevant error, as ``jsonschema.validate`` raises)."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_record_validator().iter_errors(record))
    if error is not None:
        raise error


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


def write_json(path: str | Path, data: Any, log: str | Path | None = None) -> None:
    """Atomically write ``data`` as JSON; note what was written in ``log`` if given."""
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    if log is not None:
        atomic_write_text(log, f"wrote {path}\n")


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
