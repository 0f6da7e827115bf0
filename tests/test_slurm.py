"""The Slurm path: resources and sbatch/srun options of a bench job, rank identity under srun,
and — where a Slurm cluster answers (CI starts one) — the CI study submitted through the shipped
Slurm profile."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import yaml

from benchbench.launch.command import rank_command
from benchbench.launch.slurm import job_resources, timed_alone
from benchbench.launch.teardown import SRUN_GRACE_S
from benchbench.launch.watchdog import LOST_AFTER_S
from benchbench.rank.rendezvous import first_host, rank_env_from_slurm
from benchbench.spec.hardware import HardwareProfile, load_hardware
from benchbench.spec.schema import ROOT, validate
from tests.helpers.jobs import make_test_job


def h100_job(ws=8, per_node=4):
    hw = load_hardware("h100-sxm").to_dict()
    hw["devices_per_node"] = per_node  # a 2-node x 4-GPU job
    return make_test_job("ddp", ws, hardware_cfg=HardwareProfile.from_dict(hw), timeout_s=900.0)


class Resources(dict):
    """What the plugin reads: ``job.resources.get(k)`` and ``job.resources.k``."""

    def __getattr__(self, key):
        return self[key]


def sbatch_call(res, threads):
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = SimpleNamespace(resources=Resources(res), threads=threads, name="bench", wildcards={})
    params = {
        "run_uuid": "U",
        "slurm_logfile": "L",
        "comment_str": "C",
        "account": "",
        "partition": "",
        "workdir": "/w",
    }
    return get_submit_command(job, params) + set_gres_string(job)


def test_h100_two_nodes_by_four_gpus_sbatch_and_srun_options():
    job = h100_job()
    res = job_resources(job)
    call = sbatch_call(res, threads=8)
    assert call.split("--comment C")[1].split() == [
        "-t",
        "20",
        "--mem-per-cpu",
        "8000",
        "--nodes=2",
        "--ntasks-per-node=4",
        "--cpus-per-task=8",
        "--exclusive",
        "-D",
        "/w",
        "--gres=gpu:4",
    ]
    # the plugin's defaults that clash with one rank per GPU (its issues #316, #459) stay out
    assert "--ntasks-per-gpu" not in call and "--ntasks=" not in call
    srun = rank_command(job, Path("s"), Path("o"), Path("e"), "srun")
    assert srun[:7] == [
        "srun",
        "--ntasks=8",
        "--nodes=2",
        "--ntasks-per-node=4",
        "--cpus-per-task=8",
        "--kill-on-bad-exit=1",
        "--export=ALL",
    ]


def test_one_rank_per_node_asks_for_tasks_not_tasks_per_node_1():
    """The plugin refuses tasks_per_node=1 for mpi jobs (found on the two-node local cluster)."""
    job = make_test_job("ddp", 2, hardware_cfg=load_hardware("cpu-rank-per-node"))
    res = job_resources(job)
    assert (res["nodes"], res["tasks"], res["tasks_per_node"], res["mpi"]) == (2, 2, 0, "srun")
    call = sbatch_call(res, threads=1)
    assert "--nodes=2" in call and "--ntasks=2" in call and "--ntasks-per-node" not in call
    srun = rank_command(job, Path("s"), Path("o"), Path("e"), "srun")
    assert srun[1:4] == ["--ntasks=2", "--nodes=2", "--ntasks-per-node=1"]


def test_single_rank_cpu_job_is_one_task_without_srun():
    res = job_resources(make_test_job("single", 1, hardware_cfg=load_hardware("cpu-local")))
    call = sbatch_call(res, threads=1)
    assert res["mpi"] == "" and "--ntasks=1" in call and "--gres" not in call and "--nodes=1" in call


def test_bench_jobs_ask_for_whole_nodes_unless_the_study_says_otherwise():
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    job = make_test_job("ddp", 2, hardware_cfg=load_hardware("cpu-local"))
    res = job_resources(job)
    assert res["slurm_extra"] == "--exclusive"
    validate_slurm_extra(SimpleNamespace(resources=Resources(res)))  # a flag the plugin lets through
    assert "--exclusive" in sbatch_call(res, threads=2).split()
    shared = job_resources(job, exclusive=False)
    assert shared["slurm_extra"] == "" and "--exclusive" not in sbatch_call(shared, threads=2)


@pytest.mark.parametrize(
    ("slots", "executor", "exclusive", "alone"),
    [
        (1, "local", True, True),
        (2, "local", True, False),
        (None, "local", True, False),
        (1, None, False, True),
        (None, "slurm", True, True),
        (None, "slurm-jobstep", True, True),
        (None, "slurm", False, False),
        (1, "slurm-jobstep", False, False),
    ],
)
def test_timed_alone_by_slots_locally_and_by_whole_nodes_under_slurm(slots, executor, exclusive, alone):
    assert timed_alone(slots, executor, exclusive) is alone


@pytest.mark.slow
def test_study_key_reaches_the_bench_jobs_slurm_resources(tmp_path):
    snakemake = Path(sys.executable).with_name("snakemake")
    base = [
        str(snakemake),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "-n",
        "--configfile",
        str(ROOT / "config/studies/ci.yaml"),
    ]
    default = subprocess.run(base, capture_output=True, text=True, check=True).stdout
    shared = subprocess.run([*base, "--config", "slurm_exclusive=False"], capture_output=True, text=True, check=True)
    assert default.count("slurm_extra=--exclusive") == 11  # every bench job of the ci study, and its calibration
    assert len(re.findall(r"slurm_extra=$", shared.stdout, re.M)) == 11 and "--exclusive" not in shared.stdout
    calibrate = default.split("rule calibrate:")[1].split("resources:")[1].split("\n")[0]
    assert "bench_slots=1" in calibrate and "tasks_per_node=2, " in calibrate and "mpi=srun" in calibrate  # ws2's


def test_hardware_profiles_are_valid_and_dense():
    peaks = {}
    for path in sorted((ROOT / "config/hardware").glob("*.yaml")):
        profile = yaml.safe_load(path.read_text())
        validate(profile, "hardware", str(path))
        peaks[path.stem] = profile["peak_flops"]["bf16"]
    assert peaks["h100-sxm"] == peaks["h200-sxm"] == peaks["h100-sxm-96gb"] == 989e12  # dense, not the 1979 sparse
    assert peaks["a100-80gb-sxm"] == 312e12
    assert peaks["cpu-local"] is None


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [
        ("gpu07", "gpu07"),
        ("gpu[07-09,12]", "gpu07"),
        ("a[1-2],b3", "a1"),
        ("rack[1-2]-n[003-004]", "rack1-n003"),
        ("n-1,n-2", "n-1"),
    ],
)
def test_first_host_of_a_hostlist(nodelist, host):
    assert first_host(nodelist) == host


def test_rank_env_from_slurm_variables():
    env = {
        "SLURM_PROCID": "5",
        "SLURM_NTASKS": "8",
        "SLURM_LOCALID": "1",
        "SLURM_STEP_NODELIST": "gpu[03-04]",
        "SLURM_JOB_ID": "1234",
        "SLURM_STEP_ID": "2",
        "BENCHBENCH_MASTER_PORT": "31234",
    }
    got = rank_env_from_slurm(env)
    assert got == {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "gpu03",
        "MASTER_PORT": "31234",
    }  # the port the parent picked free
    del env["BENCHBENCH_MASTER_PORT"]
    with pytest.raises(RuntimeError, match="without BENCHBENCH_MASTER_PORT"):
        rank_env_from_slurm(env)


def _need_slurm() -> None:
    up = shutil.which("sinfo") and subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    if up:
        return
    if os.environ.get("BENCHBENCH_REQUIRE_SLURM"):
        pytest.fail("BENCHBENCH_REQUIRE_SLURM is set but no Slurm cluster answers (scripts/slurm-local.sh start)")
    pytest.skip("no Slurm cluster answers (scripts/slurm-local.sh start brings up a local one)")


@pytest.mark.slow
@pytest.mark.slurm
def test_ci_study_through_real_slurm(tmp_path):
    _need_slurm()
    snakemake = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run(
        [
            str(snakemake),
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(ROOT / "config/studies/ci.yaml"),
            "--profile",
            str(ROOT / "profiles/slurm"),
            "--workflow-profile",
            str(ROOT / "profiles/slurm-ci"),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    study = tmp_path / "results" / "ci"
    runs = pd.read_csv(study / "tables" / "runs.csv")
    assert set(runs["status"]) == {"ok"} and set(runs["correct"]) == {"match"}
    rec = json.loads((study / "raw/gpt-tiny/cpu-local/ddp/ws2-r0.json").read_text())
    env = rec["env"]
    assert env["launcher"] == "srun" and env["ranks"] == 2 and env["slurm_job_id"]
    assert env["slurm_step_id"] not in (None, "batch")  # the ranks ran as tasks of an srun step
    assert (study / "report" / "index.html").exists()

    # the same job run locally with torchrun computes the same losses
    local = tmp_path / "local.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchbench",
            "run",
            "--launcher",
            "torchrun",
            "--out",
            str(local),
            "--spec",
            json.dumps(rec["job"]),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("SLURM")},
    )
    local_loss = json.loads(local.read_text())["loss"]
    assert max(abs(a - b) for a, b in zip(rec["loss"], local_loss, strict=True)) <= 1e-5


def _study_in_one_allocation(tmp_path: Path, study: str, shape: list[str], timeout: float) -> str:
    """Snakemake of ``study`` (relative to the checkout) with the local executor inside one sbatch
    allocation of ``shape`` (``--nodes=...`` and task options), waited for up to ``timeout`` s
    (cancelled and failed past it); its log must say the study is done. Returns the job id."""
    snakemake = Path(sys.executable).with_name("snakemake")
    inner = f"{snakemake} -s {ROOT / 'Snakefile'} --configfile {ROOT / study} --cores 2 --resources bench_slots=1"
    job_id = (
        subprocess.run(
            [
                "sbatch",
                "--parsable",
                *shape,
                "--cpus-per-task=1",
                "--mem-per-cpu=1000",
                "-D",
                str(tmp_path),
                "-o",
                str(tmp_path / "alloc.out"),
                "--wrap",
                inner,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .split(";")[0]
    )
    deadline = time.monotonic() + timeout
    while subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip():
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id])
            pytest.fail(f"allocation {job_id} still running after {timeout:.0f} s")
        time.sleep(2)
    log = (tmp_path / "alloc.out").read_text()
    assert "100%) done" in log, log[-3000:]
    return job_id


@pytest.mark.slow
@pytest.mark.slurm
def test_study_in_one_allocation(tmp_path):
    """The many-small-jobs recipe: one sbatch allocation, the local executor inside it, every
    multi-rank job an srun step of that allocation."""
    _need_slurm()
    job_id = _study_in_one_allocation(tmp_path, "config/studies/ci.yaml", ["--nodes=1", "--ntasks=2"], 900)
    records = [json.loads(p.read_text()) for p in (tmp_path / "results/ci/raw").rglob("ws2-r0.json")]
    assert len(records) == 4 and {r["status"] for r in records} == {"ok"}
    assert {r["env"]["slurm_job_id"] for r in records} == {job_id}
    assert {r["env"]["launcher"] for r in records} == {"srun"}
    assert len({r["env"]["slurm_step_id"] for r in records}) == 4  # one srun step per job


def _rendezvous(env_extra: dict[str, str], timeout: float = 2) -> subprocess.CompletedProcess:
    code = (
        "from benchbench.rank.rendezvous import RankEnv, init_distributed\n"
        f"init_distributed(RankEnv(1, 2, 0, 'srun'), 'gloo', {timeout})\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")} | env_extra
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.slow
def test_rendezvous_timeout_names_host_port_and_ranks():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _rendezvous({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "1", "WORLD_SIZE": "2"})
    assert proc.returncode != 0
    assert "rendezvous failed: rank 1 of 2 (local rank 0" in proc.stderr
    assert f"MASTER_ADDR=127.0.0.1 MASTER_PORT={port} within 2 s (launcher srun)" in proc.stderr


@pytest.mark.slow
def test_loopback_rendezvous_host_on_several_nodes_fails_fast():
    proc = _rendezvous({"MASTER_ADDR": "localhost", "MASTER_PORT": "29999", "SLURM_STEP_NUM_NODES": "2"}, 600)
    assert proc.returncode != 0
    assert "rendezvous host 'localhost' resolves to loopback 127.0.0.1" in proc.stderr
    assert "2-node job: each node would form a world of its own" in proc.stderr


# --- two nodes: `scripts/slurm-local.sh start --nodes 2` (CI runs the whole suite on it) ---
TWO_NODES = ["bb-node1", "bb-node2"]


def _need_two_nodes() -> None:
    _need_slurm()
    names = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, timeout=20).stdout.split()
    if sorted(set(names)) == TWO_NODES:
        return
    if os.environ.get("BENCHBENCH_REQUIRE_TWO_NODES"):
        pytest.fail(f"BENCHBENCH_REQUIRE_TWO_NODES is set but the cluster's nodes are {names}")
    pytest.skip("not the two-node local cluster (scripts/slurm-local.sh start --nodes 2)")


def _two_node_command(directory: Path, targets: list[str], *config: str) -> list[str]:
    """Snakemake of the two-node study (tests/fixtures/two_node.yaml) through the shipped Slurm
    profile, up to ``targets`` (bench records, or the runs table: no calibration, plots or report,
    to keep CI short)."""
    snakemake = Path(sys.executable).with_name("snakemake")
    return [
        str(snakemake),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(directory),
        *targets,
        "--configfile",
        str(ROOT / "tests/fixtures/two_node.yaml"),
        *(["--config", *config] if config else []),
        "--profile",
        str(ROOT / "profiles/slurm"),
        "--workflow-profile",
        str(ROOT / "profiles/slurm-ci"),
    ]


def _two_node_study(directory: Path, targets: list[str], *config: str, env: dict | None = None) -> Any:
    """:func:`_two_node_command`, run to its end."""
    cmd = _two_node_command(directory, targets, *config)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def _local_loss(tmp_path: Path, rec: dict) -> list[float]:
    """The same job run here with torchrun (no Slurm)."""
    out = tmp_path / f"local-{rec['job']['id']}.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchbench",
            "run",
            "--launcher",
            "torchrun",
            "--out",
            str(out),
            "--spec",
            json.dumps(rec["job"]),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("SLURM")},
    )
    return json.loads(out.read_text())["loss"]


@pytest.mark.slow
@pytest.mark.slurm
def test_jobs_across_two_nodes_through_the_slurm_profile(tmp_path):
    """DDP, FSDP and a 2-stage pipeline, one rank per node: ok, on both hosts, under srun, and the
    losses of the same jobs run locally."""
    _need_two_nodes()
    raw = "results/two-node/raw/gpt-tiny/cpu-rank-per-node"
    proc = _two_node_study(tmp_path, [f"{raw}/{s}/ws2-r0.json" for s in ("ddp", "fsdp", "pp-gpipe")])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    raw = tmp_path / raw
    for strategy in ("ddp", "fsdp", "pp-gpipe"):
        rec = json.loads((raw / strategy / "ws2-r0.json").read_text())
        assert rec["status"] == "ok", rec.get("error")
        assert rec["env"]["hosts"] == TWO_NODES and rec["env"]["launcher"] == "srun", rec["env"]
        assert rec["env"]["slurm_nodelist"] == "bb-node[1-2]"
        local = _local_loss(tmp_path, rec)
        assert max(abs(a - b) for a, b in zip(rec["loss"], local, strict=True)) <= 1e-5, (strategy, rec["loss"], local)


@pytest.mark.slow
@pytest.mark.slurm
def test_rank_killed_on_the_second_node_is_a_failed_record_naming_it(tmp_path):
    """Rank 1 (on bb-node2) SIGKILLs itself at step 2: a failed record naming the rank and its
    node, within a bounded time, and the study goes on to its report."""
    _need_two_nodes()
    env = _fault_env("kill:1:2")
    target = ["results/two-node-kill/tables/runs.csv"]
    proc = _two_node_study(tmp_path, target, "study=two-node-kill", "strategies=[ddp]", env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    study = tmp_path / "results/two-node-kill"
    rec = json.loads((study / "raw/gpt-tiny/cpu-rank-per-node/ddp/ws2-r0.json").read_text())
    f = rec["failure"]
    assert (f["kind"], f["rank"], f["signal"]) == ("rank_killed", 1, "SIGKILL"), f
    assert f["message"].startswith("rank 1 killed by SIGKILL on bb-node2 at step 2"), f["message"]
    assert rec["env"]["wall_time_s"] < 60, rec["env"]["wall_time_s"]  # time to fail, startup included
    runs = pd.read_csv(study / "tables/runs.csv")  # the study went on past the failed job to its table
    assert list(runs["status"]) == ["failed"]


@pytest.mark.slow
@pytest.mark.slurm
def test_hybrid_across_two_nodes_in_one_allocation(tmp_path):
    """The many-small-jobs recipe on two nodes: one 2-node allocation, a 4-rank DDP x pipeline
    hybrid with two ranks per node as an srun step of it; its loss that of the job run locally."""
    _need_two_nodes()
    job_id = _study_in_one_allocation(
        tmp_path, "tests/fixtures/two_node_hybrid.yaml", ["--nodes=2", "--ntasks-per-node=2"], 600
    )
    rec = json.loads((tmp_path / "results/two-node-alloc/raw/gpt-tiny/cpu-two-per-node/ddp-pp/ws4-r0.json").read_text())
    assert rec["status"] == "ok" and rec["env"]["slurm_job_id"] == job_id, rec.get("error")
    assert rec["env"]["hosts"] == TWO_NODES and rec["env"]["launcher"] == "srun" and rec["env"]["ranks"] == 4
    local = _local_loss(tmp_path, rec)
    assert max(abs(a - b) for a, b in zip(rec["loss"], local, strict=True)) <= 1e-5, (rec["loss"], local)


def _fault_env(fault: str) -> dict[str, str]:
    """The environment of a study whose ranks run tests/mutants' ``fault`` (BENCHBENCH_FAULT)."""
    path = os.pathsep.join(filter(None, [str(ROOT / "tests/mutants"), os.environ.get("PYTHONPATH")]))
    return os.environ | {"PYTHONPATH": path, "BENCHBENCH_MUTANT": "fault", "BENCHBENCH_FAULT": fault}


def _wait_for_step(study: Path, rank: int, steps: int, timeout: float = 180.0) -> None:
    """Until rank ``rank`` of the study's running job reports ``steps`` steps done (its heartbeat)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for hb in study.glob(f"raw/*/*/*/.ws*/hb/rank{rank}"):
            try:
                fields = hb.read_text().split()
            except FileNotFoundError:  # the job ended (and its folder went) between glob and read
                continue
            if fields and fields[0].isdigit() and int(fields[0]) >= steps:
                return
        time.sleep(0.2)
    pytest.fail(f"rank {rank} did not reach step {steps} in {timeout:.0f} s")


@pytest.mark.slow
@pytest.mark.slurm
def test_node_crash_mid_job_is_a_failed_record_naming_it(tmp_path):
    """bb-node2 crashes (every process in its namespace SIGKILLed: slurmd, slurmstepd, rank 1) while
    the job waits at step 2: a failed record naming rank 1 and bb-node2 within LOST_AFTER_S plus
    srun's teardown — srun alone would wait for Slurm to declare the node down — and the study goes
    on to its runs table once Slurm releases the allocation (SlurmdTimeout, 30 s on this cluster)."""
    _need_two_nodes()
    study = tmp_path / "results/two-node-crash"
    cmd = _two_node_command(
        tmp_path, ["results/two-node-crash/tables/runs.csv"], "study=two-node-crash", "strategies=[ddp]"
    )
    env = _fault_env("hang:1:2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        _wait_for_step(study, 1, 2)  # rank 1 (on bb-node2) sleeps there; rank 0 waits in the all-reduce
        crashed = time.time()
        subprocess.run([str(ROOT / "scripts/slurm-local.sh"), "crash-node", "bb-node2"], check=True, timeout=60)
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:  # failed before the end: SIGTERM lets Snakemake cancel its Slurm job
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run([str(ROOT / "scripts/slurm-local.sh"), "start-node", "bb-node2"], check=True, timeout=120)
    assert proc.returncode == 0, out[-4000:]
    path = study / "raw/gpt-tiny/cpu-rank-per-node/ddp/ws2-r0.json"
    rec = json.loads(path.read_text())
    f = rec["failure"]
    assert (f["kind"], f["rank"]) == ("rank_lost", 1), f
    assert f["message"].startswith("rank 1 on bb-node2 went silent at step 2: no heartbeat for"), f["message"]
    time_to_fail = datetime.fromisoformat(rec["created_at"]).timestamp() - crashed  # the record's own clock
    assert time_to_fail < LOST_AFTER_S + SRUN_GRACE_S + 15, time_to_fail
    assert list(pd.read_csv(study / "tables/runs.csv")["status"]) == ["failed"]  # the study went on
