"""Provenance: what a record says about where and how it ran (the record's ``env``), declared once.

:data:`FIELDS` lists every key with its JSON type and meaning;
:func:`benchbench.rank.environment.collect` fills them on rank 0 from the hosts and device names
gathered across ranks; the launcher adds ``wall_time_s``. Tests
check the record schema's ``env`` part and the report's provenance table against this list.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from benchbench.spec.config import ROOT


@dataclass(frozen=True)
class Field:
    """One provenance key."""

    name: str
    kind: str  # JSON type; "array" holds strings
    definition: str
    nullable: bool = False
    properties: tuple[tuple[str, int], ...] = ()  # "object": its integer keys and their minimums

    def json_schema(self) -> dict[str, Any]:
        if self.kind == "object":
            props = {k: {"type": "integer", "minimum": low} for k, low in self.properties}
            return {
                "type": ["object", "null"],
                "description": self.definition,
                "additionalProperties": False,
                "required": [k for k, _ in self.properties],
                "properties": props,
            }
        if self.kind == "array":
            return {"type": "array", "items": {"type": "string"}}
        return {"type": [self.kind, "null"]} if self.nullable else {"type": self.kind}


FIELDS: tuple[Field, ...] = (
    Field("torch", "string", "torch version"),
    Field("python", "string", "Python version"),
    Field("backend", "string", "collective backend (gloo, nccl); null for single-process plans", nullable=True),
    Field("device", "string", "device type: cpu or cuda"),
    Field("device_names", "array", "distinct device names over all ranks"),
    Field("hosts", "array", "distinct host names over all ranks"),
    Field("ranks", "integer", "number of ranks that ran"),
    Field("threads_per_rank", "integer", "intra-op threads per rank"),
    Field("oversubscribed", "boolean", "CPU: ranks x threads exceeded the cores of the host"),
    Field("git_commit", "string", "benchbench commit (or 'unknown')"),
    Field("slurm_job_id", "string", "Slurm job id, when run under Slurm", nullable=True),
    Field("slurm_step_id", "string", "Slurm step id, when run under Slurm", nullable=True),
    Field("slurm_nodelist", "string", "Slurm step (or job) node list", nullable=True),
    Field("launcher", "string", "what started the ranks: single, torchrun or srun"),
    Field(
        "tf32",
        "boolean",
        "GPU: TF32 matmuls allowed (torch.backends.cuda.matmul.allow_tf32); null on CPU",
        nullable=True,
    ),
    Field("matmul_precision", "string", "torch.get_float32_matmul_precision()"),
    Field("cpu_count", "integer", "logical CPUs of rank 0's host"),
    Field("timed_alone", "boolean", "no other timed job was allowed to run beside this one"),
    Field("wall_time_s", "number", "end-to-end time of the job as the launcher saw it (s)"),
    Field(
        "retry_of", "string", "created_at of the failed record this run retried (retry_failed); launcher", nullable=True
    ),
    Field(
        "batch",
        "object",
        "a batched launch's job (benchbench/launch/batch.py); absent when run alone",
        nullable=True,
        properties=(("index", 0), ("size", 1)),
    ),
)
NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)


GIT_COMMIT_ENV = "BENCHBENCH_GIT_COMMIT"  # set once per study by the workflow; its jobs inherit it


@cache
def git_commit() -> str:
    """The checkout's commit, read once per process: :data:`GIT_COMMIT_ENV` when set (the workflow
    reads it once per study), else the ``.git`` files themselves (no ``git`` process per job), else
    ``git rev-parse HEAD``; ``unknown`` outside a checkout."""
    return os.environ.get(GIT_COMMIT_ENV) or _read_head(ROOT / ".git") or _rev_parse()


def _read_head(git: Path) -> str | None:
    """HEAD's commit from the files of ``git`` (a folder, or a worktree's ``gitdir:`` file): a
    detached HEAD, a loose ref or a packed one; None when anything is unexpected."""
    try:
        if git.is_file():
            git = (git.parent / git.read_text().split("gitdir:", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head if len(head) == 40 else None
        ref = head[5:]
        common = (git / (git / "commondir").read_text().strip()).resolve() if (git / "commondir").exists() else git
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
        for line in (common / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except (OSError, IndexError):
        return None
    return None


def _rev_parse() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
