"""How fast a large study becomes jobs and a Snakemake DAG, beside the same machine's floor.

    PYTHONPATH=. .venv/bin/python benchmarks/large_study.py [--models 42 --repeats 5] [--no-dag]

The study (written to a temporary YAML file): ``--models`` tiny models (MLPs and GPTs of slightly
different sizes) x 8 strategies (single, dp-naive, ddp, ddp-fp16, zero1, fsdp, tp, pp-1f1b) x
world sizes 1, 2, 4, 8 x ``--repeats``; the defaults expand to about 5,000 jobs. Printed, each
with its wall time and peak memory:

* **expansion** — :func:`benchbench.study.expand` in this process (its first call, with whatever it
  imports; tracemalloc peak of a second call), then per-job work of the kind the Snakefile adds
  (record paths, ``json.dumps(job.to_dict())``);
* **DAG** — ``snakemake -n --quiet`` on the project's Snakefile with this study (config checked,
  study expanded, DAG built, every bench job's params / resources / priority evaluated), in a
  fresh process (peak RSS of that process);
* **DAG, resumed** — the same dry run once every job has a record (a study resumed or re-checked
  after it finished; each bench job's retry token reads its record), with ``retry_failed=True``;
* **floor** — the same dry run of a trivial Snakefile with as many jobs (one wildcard rule, one
  rule that takes all of them): what Snakemake alone costs on this machine.

Target: <= 10 s for the 5,000-job DAG. Where the floor itself is above the target, the target is
out of reach on this machine and the figure to watch is benchbench's part: DAG minus floor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import yaml

from benchbench.spec.config import ROOT, check_config
from benchbench.spec.paths import StudyLayout
from benchbench.study import expand

TARGET_S = 10.0
STRATEGIES = ["single", "dp-naive", "ddp", "ddp-fp16", "zero1", "fsdp", "tp", "pp-1f1b"]
TRIVIAL = """N = int(config["njobs"])

rule all:
    input: "done.txt"

rule gather:
    input: expand("out/{i}.json", i=range(N))
    output: "done.txt"
    shell: "touch {output}"

rule one:
    output: "out/{i}.json"
    params: job=lambda wildcards: wildcards.i
    shell: "echo {params.job} > {output}"
"""
_RUSAGE = (
    "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)"
)


def study(models: int, repeats: int) -> dict:
    """The large study's config (before validation)."""
    cfg: dict = {
        "study": "large",
        "scaling": "strong",
        "hardware": ["cpu-local"],
        "strategies": STRATEGIES,
        "world_sizes": [1, 2, 4, 8],
        "steps": 5,
        "warmup_steps": 1,
        "repeats": repeats,
        "models": {},
    }
    for k in range(models):
        if k % 2:
            cfg["models"][f"gpt-{k}"] = {
                "arch": "gpt",
                "layers": 2,
                "hidden": 32 + 8 * k,
                "heads": 4,
                "seq_len": 16,
                "vocab": 64,
                "batch_size": 16,
            }
        else:
            cfg["models"][f"mlp-{k}"] = {"arch": "mlp", "width": 64 + 8 * k, "depth": 4, "out_dim": 4, "batch_size": 32}
    return cfg


def time_expansion(cfg: dict) -> int:
    """Expand ``cfg`` in this process (first cold, timed; then again under tracemalloc for its
    peak) and do the Snakefile's per-job work; print the figures."""
    start = time.perf_counter()
    jobs, dropped = expand(cfg)
    wall = time.perf_counter() - start
    tracemalloc.start()
    expand(cfg)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(
        f"expansion: {len(jobs)} jobs, {len(dropped)} dropped: {wall:.2f} s wall (first call, imports "
        f"included), tracemalloc peak {peak:.0f} MiB (second call)"
    )
    layout = StudyLayout(cfg["study"])
    start = time.perf_counter()
    by_record = {str(layout.record(j)): j for j in jobs}
    specs = [json.dumps(j.to_dict(), sort_keys=True) for j in by_record.values()]
    spent = time.perf_counter() - start
    print(f"per job (record path, json.dumps(job.to_dict())): {spent:.2f} s wall, {len(specs)} jobs")
    return len(jobs)


def dry_run(snakefile: Path, workdir: Path, config: list[str], path: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of ``snakemake -n --quiet`` in a fresh process."""
    snakemake = Path(sys.executable).with_name("snakemake")
    cmd = [str(snakemake), "-n", "--quiet", "--cores", "1", "-s", str(snakefile), "-d", str(workdir), *config]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": path}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _RUSAGE, *cmd], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return wall, int(done.stdout.split()[-1]) / 1024


def _no_scontrol(folder: Path) -> str:
    """A PATH whose ``scontrol`` fails at once (``folder`` holds it)."""
    folder.mkdir()
    (folder / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (folder / "scontrol").chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


def _fake_records(raw: dict, workdir: Path) -> None:
    """A finished-looking record (ok, as the retry token reads it) at every record path of the study."""
    jobs, _ = expand(check_config(raw))
    layout = StudyLayout(raw["study"], workdir / "results")
    text = json.dumps({"status": "ok", "created_at": "2026-01-01T00:00:00+00:00", "env": {"retry_of": None}})
    for j in jobs:
        path = layout.record(j)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def time_dags(raw: dict, n_jobs: int, no_slurm_probe: bool) -> tuple[float, float]:
    """Dry-run benchbench's Snakefile on the study and a trivial one with as many jobs; print both."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = _no_scontrol(tmp / "bin") if no_slurm_probe else os.environ.get("PATH", "")
        (tmp / "study.yaml").write_text(yaml.safe_dump(raw))
        (tmp / "Snakefile.trivial").write_text(TRIVIAL)
        (tmp / "bench").mkdir()
        (tmp / "trivial").mkdir()
        wall, rss = dry_run(ROOT / "Snakefile", tmp / "bench", ["--configfile", str(tmp / "study.yaml")], path)
        print(
            f"DAG (snakemake -n, benchbench's Snakefile, {n_jobs} bench jobs): {wall:.1f} s wall, "
            f"peak RSS {rss:.0f} MiB"
        )
        _fake_records(raw, tmp / "bench")
        again, again_rss = dry_run(
            ROOT / "Snakefile",
            tmp / "bench",
            ["--configfile", str(tmp / "study.yaml"), "--config", "retry_failed=True"],
            path,
        )
        print(
            f"DAG, resumed (every record present, retry_failed=True): {again:.1f} s wall, peak RSS {again_rss:.0f} MiB"
        )
        trivial = ["--workflow-profile", "none", "--config", f"njobs={n_jobs}"]
        floor, floor_rss = dry_run(tmp / "Snakefile.trivial", tmp / "trivial", trivial, path)
        print(
            f"floor (snakemake -n, trivial Snakefile, {n_jobs} jobs): {floor:.1f} s wall, peak RSS {floor_rss:.0f} MiB"
        )
    return wall, floor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=45)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-dag", action="store_true", help="time the expansion only")
    ap.add_argument(
        "--no-slurm-probe",
        action="store_true",
        help="hide `scontrol` from both dry runs (the Slurm executor plugin runs `scontrol show config` "
        "when Snakemake starts; without a reachable controller it waits up to 10 s)",
    )
    args = ap.parse_args(argv)
    raw = study(args.models, args.repeats)
    n_jobs = time_expansion(check_config(raw))
    if args.no_dag:
        return 0
    wall, floor = time_dags(raw, n_jobs, args.no_slurm_probe)
    verdict = "met" if wall <= TARGET_S else "NOT met" + ("; the floor is above it here" if floor > TARGET_S else "")
    print(f"benchbench's part (DAG - floor): {wall - floor:.1f} s; target DAG <= {TARGET_S:.0f} s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
