"""Study throughput: what a job pays before and after its timed steps (benchmarks/study_overhead.py
measures it). Pinned here: the parent side imports no torch; a rank imports only the torch its
plan uses; the git commit is read without a ``git`` process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchbench.protocol import provenance
from benchbench.spec.config import ROOT
from tests.helpers.jobs import make_test_job

# What the parent of a job, the Snakefile (workflow/rules/common.smk) and the tables, plots and
# report rules may import: every module of the workflow side's floors (.importlinter's
# workflow-side contract) and the torch-free part of models/, found on disk so that a new module
# is checked without being listed. Left out: torchrun's agent, a process of its own.
WORKFLOW_FLOORS = ("spec", "protocol", "launch", "costmodel", "results", "cli")
TORCH_FREE_MODELS = ("registry", "rules", "presets", "formulas", "tensors", "custom")  # not build, accounting
OWN_PROCESS = {"benchbench.launch.torchrun"}


def parent_modules() -> list[str]:
    """The modules the parent side may import (see above), by dotted name."""
    package = ROOT / "benchbench"
    names = ["benchbench.study", *(f"benchbench.models.{m}" for m in TORCH_FREE_MODELS)]
    for floor in WORKFLOW_FLOORS:
        for path in sorted((package / floor).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return [n for n in names if n not in OWN_PROCESS]


PARENT_MODULES = parent_modules()
# torch's APIs that only some plans use, whose imports cost up to a second (ZeRO's
# torch.distributed.optim scripts its functional optimizers). Not listed: torch._dynamo, FSDP and
# DTensor and its tensor parallelism, which every job loads (torch.optim's add_param_group imports
# dynamo, and dynamo them).
HEAVY = ["torch.distributed.optim", "torch.distributed.pipelining"]


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_parent_side_imports_no_torch():
    code = f"import sys\nfor m in {PARENT_MODULES!r}: __import__(m)\nprint('torch' in sys.modules)"
    assert _python(code).strip() == "False"


@pytest.mark.slow
def test_a_plan_imports_only_the_torch_it_uses(tmp_path):
    """A single-process job run in this process by the rank's own entry point: it trains, writes
    its ok record, and never loads ZeRO's optimizers or pipelining."""
    job = make_test_job("single", 1, steps=1, warmup_steps=1)
    (tmp_path / "job.json").write_text(json.dumps(job.to_dict()))
    args = ["--job-file", str(tmp_path / "job.json"), "--out", str(tmp_path / "r.json"), "--err-dir", str(tmp_path)]
    code = (
        f"import sys\nfrom benchbench.rank.main import main\nassert main({args!r}) == 0\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert _python(code).strip() == ""
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "ok"


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_git_commit_is_read_from_the_files_as_git_reads_it(tmp_path, monkeypatch):
    assert provenance._read_head(ROOT / ".git") == _git("rev-parse", "HEAD")
    # a worktree-like layout: a gitdir file, a commondir, the branch only in packed-refs
    common, wt = tmp_path / "repo.git", tmp_path / "repo.git" / "worktrees" / "w"
    wt.mkdir(parents=True)
    (tmp_path / "checkout").mkdir()
    (tmp_path / "checkout" / ".git").write_text(f"gitdir: {wt}\n")
    (wt / "HEAD").write_text("ref: refs/heads/b\n")
    (wt / "commondir").write_text("../..\n")
    (common / "packed-refs").write_text(f"# pack-refs\n{'a' * 40} refs/heads/bb\n{'c' * 40} refs/heads/b\n")
    assert provenance._read_head(tmp_path / "checkout" / ".git") == "c" * 40
    (common / "refs" / "heads").mkdir(parents=True)
    (common / "refs" / "heads" / "b").write_text("d" * 40 + "\n")  # a loose ref wins over a packed one
    assert provenance._read_head(tmp_path / "checkout" / ".git") == "d" * 40
    (wt / "HEAD").write_text("ref: refs/heads/gone\n")
    assert provenance._read_head(tmp_path / "checkout" / ".git") is None  # then git rev-parse is asked
    provenance.git_commit.cache_clear()
    monkeypatch.setenv(provenance.GIT_COMMIT_ENV, "e" * 40)  # what the workflow sets once per study
    try:
        assert provenance.git_commit() == "e" * 40
    finally:
        provenance.git_commit.cache_clear()


def test_study_throughput_share_from_record_times():
    from benchbench.results.report import study_throughput

    def rec(created: str, wall: float | None, steps: list[float]) -> dict:
        return {"created_at": created, "env": {"wall_time_s": wall} if wall else {}, "step_time_s": steps}

    records = [
        rec("2026-01-01T00:00:10+00:00", 4.0, [0.5, 0.5]),
        rec("2026-01-01T00:00:20+00:00", 6.0, [1.0]),
        rec("2026-01-01T00:00:21+00:00", None, []),
    ]  # an infeasible record: no launch, no time
    t = study_throughput(records)
    assert t == {"timed_s": 2.0, "span_s": 14.0, "jobs_s": 10.0, "share": 2.0 / 14.0, "share_of_jobs": 0.2}
    assert study_throughput(records[2:]) is None


def test_imports_are_frozen_once_so_each_collection_scans_only_the_job():
    """Every job collects garbage four times (the timed loop, after it, the gate, between a batch's
    jobs); with torch loaded each full collection walks ~290,000 objects (0.14 s here). run_rank
    freezes what the imports left, once per process: the frozen count is large, a second call
    freezes nothing more, and a collection no longer walks the imports."""
    code = (
        "import gc, sys\nfrom benchbench.rank.loop import freeze_imports\n"
        "freeze_imports(); n = gc.get_freeze_count(); freeze_imports()\n"
        "print(n, gc.get_freeze_count() == n, 'torch._dynamo' in sys.modules, len(gc.get_objects()) < n / 10)"
    )
    frozen, once, dynamo, few = _python(code).split()
    assert int(frozen) > 100_000 and once == "True" and dynamo == "True" and few == "True"
