"""Batched launches (benchbench/launch/batch.py, ``benchbench.rank.main --batch``): several 2-rank jobs in
one launch give the records they give alone, marked batched; a job that raises or kills a rank
fails its own record and the jobs after it are relaunched."""

from __future__ import annotations

import time

import pytest

from benchbench.launch.batch import Batch, BatchWatch, check_batch, job_starts, run_batch
from benchbench.launch.run_job import run_job
from benchbench.protocol.lifeline import STARTED_FILE
from benchbench.protocol.record import validate_record
from tests.helpers.jobs import make_test_job
from tests.helpers.processes import orphans


def _jobs(wide: bool = False) -> list:
    """Three small jobs of one batch: a tiny GPT with DDP (``wide``: a wider MLP instead, which
    leaves freed memory behind), the GPT with another seed, then FSDP (another plan, same mesh)."""
    first = (
        make_test_job("ddp", 2, model_cfg={"arch": "mlp", "width": 1024, "depth": 4, "out_dim": 4}, global_batch=64)
        if wide
        else make_test_job("ddp", 2)
    )
    return [first, make_test_job("ddp", 2, seed=1), make_test_job("fsdp", 2)]


def test_check_batch_names_what_differs():
    check_batch(_jobs())
    with pytest.raises(ValueError, match=r"must share \(hardware, world_size, threads_per_rank, distributed\)"):
        check_batch([make_test_job("ddp", 2), make_test_job("single", 1)])


@pytest.mark.slow
def test_batch_records_equal_unbatched(tmp_path):
    jobs = _jobs(wide=True)
    results = run_batch(jobs, [tmp_path / f"b{i}.json" for i in range(3)], launcher="torchrun")
    assert [p.name for _, p in results] == ["b0.json", "b1.json", "b2.json"]
    for i, (record, _) in enumerate(results):
        validate_record(record)
        assert record["status"] == "ok", record["error"]
        assert record["env"]["batch"] == {"index": i, "size": 3}
        assert record["env"]["wall_time_s"] > 0
        assert record["summary"]["peak_mem_source"] == "rss_hwm_reset"  # reset per job, not the process's peak
    # the last job ran after two others in the same processes: its losses are those it has alone
    alone, _ = run_job(jobs[2], tmp_path / "alone.json", launcher="torchrun")
    assert "batch" not in alone["env"]
    assert results[2][0]["loss"] == alone["loss"]
    assert results[0][0]["loss"] != results[1][0]["loss"]  # the records are not one job's
    # its peak memory is its own: without the heap given back between jobs, ~1.26x alone's here
    assert results[2][0]["summary"]["peak_mem_mb"] <= 1.08 * alone["summary"]["peak_mem_mb"]


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "kind"), [("raise:1:1", "rank_exception"), ("kill:1:1", "rank_killed")])
def test_failing_job_fails_alone_and_the_rest_relaunch(tmp_path, fault, monkeypatch, spec, kind):
    fault(spec)
    monkeypatch.setenv("BENCHBENCH_FAULT_JOB", "1")
    results = run_batch(_jobs(), [tmp_path / f"b{i}.json" for i in range(3)], launcher="torchrun")
    statuses = [r["status"] for r, _ in results]
    assert statuses == ["ok", "failed", "ok"], [r["error"] for r, _ in results]
    failed = results[1][0]
    validate_record(failed)
    assert (failed["failure"]["kind"], failed["failure"]["rank"]) == (kind, 1), failed["failure"]["message"]
    assert failed["env"]["batch"] == {"index": 1, "size": 3}
    assert results[2][0]["env"]["batch"] == {"index": 2, "size": 3}  # relaunched, still the batch's third
    assert orphans(tmp_path) == []


@pytest.mark.parametrize("bad", [0, 33, "2"])
def test_jobs_per_launch_is_checked(bad):
    import yaml

    from benchbench.spec.config import ROOT, ConfigError, check_config

    study = yaml.safe_load((ROOT / "config/studies/ci.yaml").read_text())
    assert check_config(dict(study))["jobs_per_launch"] == 1  # off unless asked for
    with pytest.raises(ConfigError, match=r"jobs_per_launch: .*\(allowed: batched launches"):
        check_config(dict(study, jobs_per_launch=bad), "test")


def test_run_batch_command_refuses_a_mixed_batch(tmp_path, capsys):
    import json

    from benchbench.cli.main import main

    specs = json.dumps([make_test_job("ddp", 2).to_dict(), make_test_job("ddp", 2, threads_per_rank=2).to_dict()])
    assert main(["run-batch", "--specs", specs, "--out", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 2
    assert "--specs: a batch's jobs must share" in capsys.readouterr().err
    assert main(["run-batch", "--specs", specs, "--out", str(tmp_path / "a.json")]) == 2
    assert "--specs: 2 jobs but 1 --out paths" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing launched, no record


@pytest.mark.parametrize("launcher", ["torchrun", "srun"])
def test_batched_launch_command_passes_the_batch_file(launcher, tmp_path):
    from benchbench.launch.command import rank_command

    job = make_test_job("ddp", 2)
    cmd = rank_command(
        job,
        tmp_path / "job.json",
        tmp_path / "r.json",
        tmp_path,
        launcher,
        1234,
        rank_args=["--batch", str(tmp_path / "batch.json")],
    )
    assert cmd[-4:] == ["-m", "benchbench.rank.main", "--batch", str(tmp_path / "batch.json")]
    assert "--job-file" not in cmd and (cmd[0] == "srun") == (launcher == "srun")


def test_job_wall_times_come_from_rank_0s_starts_not_the_parents_polls(tmp_path):
    """A job shorter than the parent's 0.25 s poll is never seen running: the parent's view has
    no start for it. Its wall time is still the span between the starts rank 0 wrote."""
    jobs = _jobs()
    folders = [tmp_path / f"job{k}" for k in range(3)]
    for k, folder in enumerate(folders):
        folder.mkdir()
        if k:
            (folder / STARTED_FILE).write_text(f"{1000.0 + 0.1 * k:.6f}")
    watch = BatchWatch(jobs, folders, time.monotonic())  # the parent saw only the first job start
    starts = job_starts(Batch(jobs, folders, tmp_path), watch)
    assert starts[1:] == [1000.1, 1000.2] and abs(starts[0] - time.time()) < 1
    (folders[2] / STARTED_FILE).unlink()  # the third job never began: it starts when the launch ends
    assert abs(job_starts(Batch(jobs, folders, tmp_path), watch)[2] - time.time()) < 1
