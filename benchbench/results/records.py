"""Reading run records for the tables: a cheap structural check per record, so a truncated,
foreign or damaged file is reported (path and reason) and left out instead of crashing the
aggregation or mixing into it.

The check covers what the tables read (``schema_version``, ``status``, ``error``, ``loss``,
``summary``, every ``job`` field and the plan's mesh sizes, their JSON types), not the whole record
schema: full ``jsonschema`` validation of 10,000 records costs more than the aggregation itself,
and records are validated when written (:func:`benchbench.protocol.record.write_record`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from benchbench.protocol.record import SCHEMA_VERSION, STATUSES
from benchbench.spec.job import Job
from benchbench.spec.metrics import SUMMARY
from benchbench.spec.paths import StudyLayout

#: Record versions the tables read: 3 (before ``failure``) and the current one.
READABLE_SCHEMA_VERSIONS = frozenset({3, SCHEMA_VERSION})
REQUIRED_KEYS = ("job", "status", "error", "loss", "summary")
JOB_KEYS = tuple(f.name for f in fields(Job))
_JOB_STRINGS = ("study", "model", "hardware", "strategy", "dtype")
_JOB_INTEGERS = ("world_size", "global_batch", "steps", "warmup_steps", "seed", "repeat")
_PLAN_INTEGERS = ("dp", "tp", "pp")
_NUMERIC_SUMMARY = tuple(m.name for m in SUMMARY if m.kind in ("number", "integer"))
_MAX_REASON = 200


@dataclass(frozen=True)
class Rejected:
    """A file that is not a readable record, and why (a row of ``rejected.csv``)."""

    path: str
    reason: str


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _job_problem(job: Any) -> str | None:
    """What makes ``job`` unusable for the tables (``None``: nothing)."""
    if not isinstance(job, dict):
        return f"job is {type(job).__name__}, not an object"
    missing = [k for k in JOB_KEYS if k not in job]
    if missing:
        return f"job: missing keys {missing}"
    bad = [k for k in _JOB_STRINGS if not isinstance(job[k], str)]
    bad += [k for k in _JOB_INTEGERS if not _is_int(job[k])]
    bad += [] if _is_number(job["loss_tolerance"]) else ["loss_tolerance"]
    if bad:
        return f"job: wrong type of {bad}"
    plan = job["plan"]
    if not isinstance(plan, dict) or not all(_is_int(plan.get(k)) for k in _PLAN_INTEGERS):
        return f"job.plan: not an object with integer {list(_PLAN_INTEGERS)}"
    return None


def _body_problem(data: dict[str, Any]) -> str | None:
    """What makes the record's results unusable for the tables (``None``: nothing)."""
    if data["status"] not in STATUSES:
        return f"status {data['status']!r} not in {list(STATUSES)}"
    if data["error"] is not None and not isinstance(data["error"], str):
        return "error is neither a string nor null"
    loss, summary = data["loss"], data["summary"]
    if not isinstance(loss, list) or not all(_is_number(x) for x in loss):
        return "loss is not a list of numbers"
    if not isinstance(summary, dict):
        return "summary is not an object"
    bad = [k for k in _NUMERIC_SUMMARY if summary.get(k) is not None and not _is_number(summary[k])]
    if bad:
        return f"summary: not numbers: {bad}"
    applied, failure = data.get("applied", []), data.get("failure")
    if not isinstance(applied, list) or not all(isinstance(a, str) for a in applied):
        return "applied is not a list of strings"
    if failure is not None and not isinstance(failure, dict):
        return "failure is neither an object nor null"
    return None


def record_problem(data: Any) -> str | None:
    """Why ``data`` (parsed JSON) is not a record the tables can use; ``None`` if it is."""
    if not isinstance(data, dict):
        return f"not a JSON object but {type(data).__name__}"
    if "schema_version" not in data:
        return "no schema_version"
    if not _is_int(data["schema_version"]) or data["schema_version"] not in READABLE_SCHEMA_VERSIONS:
        return f"schema_version {data['schema_version']!r} not in {sorted(READABLE_SCHEMA_VERSIONS)}"
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        return f"missing keys {missing}"
    return _job_problem(data["job"]) or _body_problem(data)


def read_one(path: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    """A record and ``None``, or ``None`` and why the file is not one."""
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as e:
        return None, f"unreadable: {e.strerror or e}"
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError
        return None, f"not valid JSON: {str(e)[:_MAX_REASON]}"
    reason = record_problem(data)
    return (None, reason) if reason else (data, None)


def read_records(paths: Iterable[str | Path], warn: bool = True) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """The usable records of ``paths`` (order kept) and the rejected files; with ``warn``, each
    rejection is also a line ``benchbench: skipped record <path>: <reason>`` on stderr."""
    records: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    for path in paths:
        record, reason = read_one(path)
        if record is not None:
            records.append(record)
            continue
        rejected.append(Rejected(str(path), reason or "unknown"))
        if warn:
            print(f"benchbench: skipped record {path}: {reason}", file=sys.stderr)
    return records, rejected


def study_records(layout: StudyLayout) -> list[Path]:
    """The ok-or-latest record files under a study's ``raw/`` folder: not the ``.failed.json``
    ones, nor anything in a dot-folder (a running job's scratch space beside its record)."""
    hidden = lambda p: any(part.startswith(".") for part in p.relative_to(layout.raw).parts)  # noqa: E731
    return sorted(p for p in layout.raw.rglob("*.json") if not p.name.endswith(".failed.json") and not hidden(p))
