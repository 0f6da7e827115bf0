"""Study throughput: seconds of overhead per job (end-to-end minus timed steps), for single jobs and
for a whole study run through Snakemake, and the share of wall time spent in timed steps.

    PYTHONPATH=. .venv/bin/python benchmarks/study_overhead.py [--runs 3] [--workflow default|ci|none]
        [--checkout DIR] [--batch 4] [--jobs-per-launch K | --agreement K]

* **single jobs** — ``benchbench run`` of a tiny GPT (1 layer, hidden 32) with 1 warm-up and 1 timed
  step: ``single`` at 1 rank and ``ddp`` at 2 ranks, ``--runs`` times each, interleaved. End to end
  is the wall time of the command; timed work the record's timed steps (``step_time_s``).
* **workflow** — ``snakemake`` of the default study (``--workflow default``; ``ci``: the CI study)
  into a temporary folder, every rule (bench, aggregate, plot, calibrate, predict, report): its wall
  time, the timed steps of all records, their share of the wall time, and the overhead per bench job.

* **batched** — ``benchbench run-batch`` of ``--batch`` tiny 2-rank DDP jobs (seeds 0, 1, ...) in
  one launch against one such job alone: the overhead each extra job adds, (end-to-end of the
  batch − of one job − the extra jobs' timed steps) / (jobs − 1). ``--jobs-per-launch K`` runs the
  workflow batched (the study's ``jobs_per_launch``).

``--agreement K`` runs the workflow twice, unbatched and with ``K`` jobs per launch, prints both
runs' figures and, per configuration, the median step time of each (mean over repeats), their
ratio and the unbatched repeat-to-repeat spread, whether the losses are identical, and
``benchbench compare`` both ways (batched and unbatched timings agree within noise when neither
direction finds a configuration slower).

``--checkout DIR`` runs another checkout's benchbench (the commands get ``PYTHONPATH=DIR``), for
before/after figures. Targets (the study-throughput issue, on this 2-core machine): tiny 1-rank job
<= 2.5 s, 2-rank <= 4 s, batched <= 0.5 s per extra job, the default study <= 120 s in Snakemake
with timed steps >= 35 % of its wall time. On a shared machine every figure is inflated; take the minimum over runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = """study: tiny
scaling: strong
models:
  tiny-gpt: {arch: gpt, layers: 1, hidden: 32, heads: 2, seq_len: 8, vocab: 32, batch_size: 4}
hardware: [cpu-local]
strategies: [single, ddp]
world_sizes: [1, 2]
steps: 1
warmup_steps: 1
repeats: 1
seed: 0
dtype: fp32
threads_per_rank: 1
"""
SINGLE = {"1-rank": ("single", 1, 2.5), "2-rank": ("ddp", 2, 4.0)}  # name: strategy, ranks, target (s)
STUDY_TARGET_S, SHARE_TARGET = 120.0, 0.35
BATCH_TARGET_S = 0.5  # overhead per extra job of a batched launch
STUDIES = {"default": None, "ci": ROOT / "config/studies/ci.yaml"}


def _env(checkout: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}


def timed_steps(record: dict) -> float:
    """Seconds of a record's timed steps (0 for a record that is not ok)."""
    return float(sum(record.get("step_time_s") or []))


def _cpu() -> float:
    """CPU seconds (user + system) of every waited-for descendant so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_single(checkout: Path, tmp: Path, strategy: str, ranks: int) -> tuple[float, float, float]:
    """One ``benchbench run`` of the tiny job: (end-to-end s, timed steps s, CPU s of all its
    processes — less sensitive than the wall time to other work on a shared machine)."""
    out = tmp / f"{strategy}-{ranks}.json"
    cmd = [
        sys.executable,
        "-m",
        "benchbench",
        "run",
        "--config",
        str(tmp / "tiny.yaml"),
        "--model",
        "tiny-gpt",
        "--strategy",
        strategy,
        "--world-size",
        str(ranks),
        "--out",
        str(out),
    ]
    start, cpu = time.perf_counter(), _cpu()
    proc = subprocess.run(cmd, env=_env(checkout), cwd=tmp, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, _cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"benchbench run failed:\n{proc.stdout}\n{proc.stderr}")
    return wall, timed_steps(json.loads(out.read_text())), cpu


def single_jobs(checkout: Path, runs: int) -> dict[str, list[tuple[float, float, float]]]:
    """Every single-job case ``runs`` times, interleaved (a busy spell hits both cases alike)."""
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in SINGLE}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        (tmp / "tiny.yaml").write_text(TINY)
        for _ in range(runs):
            for name, (strategy, ranks, _target) in SINGLE.items():
                results[name].append(run_single(checkout, tmp, strategy, ranks))
    return results


def run_batch(checkout: Path, tmp: Path, n: int) -> tuple[float, float]:
    """``benchbench run-batch`` of ``n`` tiny 2-rank DDP jobs (seeds 0..n-1): (end to end s, timed
    steps s of all its records)."""
    sys.path.insert(0, str(checkout))
    from benchbench.spec.config import load_config
    from benchbench.spec.job import make_job

    job, _ = make_job(load_config(str(tmp / "tiny.yaml")), "tiny-gpt", "cpu-local", "ddp", 2, 0)
    specs = [job.replace(seed=s).to_dict() for s in range(n)]
    outs = [str(tmp / f"batch{n}-{k}.json") for k in range(n)]
    cmd = [sys.executable, "-m", "benchbench", "run-batch", "--specs", json.dumps(specs), "--out", *outs]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(checkout), cwd=tmp, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"benchbench run-batch failed:\n{proc.stdout}\n{proc.stderr}")
    return wall, sum(timed_steps(json.loads(Path(o).read_text())) for o in outs)


def batched(checkout: Path, runs: int, n: int) -> list[float]:
    """Overhead per extra job of a batch of ``n``, per run (a batch of 1 and of ``n``, interleaved)."""
    per_extra = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        (tmp / "tiny.yaml").write_text(TINY)
        for _ in range(runs):
            one, one_timed = run_batch(checkout, tmp, 1)
            many, many_timed = run_batch(checkout, tmp, n)
            per_extra.append((many - one - (many_timed - one_timed)) / (n - 1))
    return per_extra


def print_batched(n: int, per_extra: list[float]) -> None:
    """The batched overhead per extra job (min, median) and its target."""
    best = min(per_extra)
    print(
        f"batched ({n} tiny 2-rank DDP jobs in one launch vs one): overhead per extra job "
        f"{best:.2f} s min, {statistics.median(per_extra):.2f} s median; "
        f"target <= {BATCH_TARGET_S:g} s: {_verdict(best <= BATCH_TARGET_S)}"
    )


def run_workflow(checkout: Path, study: str, jobs_per_launch: int = 1, keep: Path | None = None) -> dict[str, float]:
    """The whole study through Snakemake in a temporary folder (``keep``: in that folder, left
    there): wall, jobs, timed steps."""
    snakemake = Path(sys.executable).with_name("snakemake")
    with tempfile.TemporaryDirectory() as t:
        where = keep or Path(t)
        where.mkdir(parents=True, exist_ok=True)
        cmd = [str(snakemake), "-s", str(checkout / "Snakefile"), "--directory", str(where), "--quiet"]
        if STUDIES[study]:
            cmd += ["--configfile", str(STUDIES[study])]
        if jobs_per_launch > 1:
            cmd += ["--config", f"jobs_per_launch={jobs_per_launch}"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=_env(checkout), cwd=checkout, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        records = [json.loads(p.read_text()) for p in where.glob("results/*/raw/**/*.json")]
    job_walls = sum(r["env"].get("wall_time_s") or 0.0 for r in records)
    return {"wall": wall, "jobs": len(records), "timed": sum(map(timed_steps, records)), "job_walls": job_walls}


def _records(folder: Path) -> dict[str, dict]:
    """A study's ok records under ``folder`` by job id."""
    recs = (json.loads(p.read_text()) for p in folder.glob("results/*/raw/**/*.json"))
    return {r["job"]["id"]: r for r in recs if r["status"] == "ok"}


def _study_dir(folder: Path) -> Path:
    """The ``results/<study>`` folder of a workflow run in ``folder``."""
    return next(folder.glob("results/*/raw")).parent


def print_agreement(unbatched: Path, batched_dir: Path) -> None:
    """Per configuration: median step time unbatched and batched (mean over repeats), their ratio,
    and the repeat-to-repeat spread unbatched (the noise to hold the ratio against); how many
    records say they ran batched; whether the losses are identical."""
    a, b = _records(unbatched), _records(batched_dir)
    configs: dict[str, list[str]] = {}
    for job_id in sorted(a):
        configs.setdefault(job_id.rsplit("__", 1)[0], []).append(job_id)
    print(f"  {'configuration':42} {'unbatched s':>11} {'batched s':>10} {'ratio':>6} {'repeat spread':>13}")
    for config, ids in configs.items():
        ua = [a[i]["summary"]["step_time_median_s"] for i in ids]
        ub = [b[i]["summary"]["step_time_median_s"] for i in ids if i in b]
        spread = (max(ua) - min(ua)) / statistics.mean(ua)
        ratio = statistics.mean(ub) / statistics.mean(ua) if ub else float("nan")
        print(
            f"  {config:42} {statistics.mean(ua):11.4f} {statistics.mean(ub) if ub else float('nan'):10.4f} "
            f"{ratio:6.3f} {100 * spread:12.1f}%"
        )
    same = sum(a[i]["loss"] == b[i]["loss"] for i in a if i in b)
    ran_batched = sum(bool((r["env"].get("batch") or {}).get("size", 1) > 1) for r in b.values())
    print(f"  losses identical in {same} of {len(a)} jobs; {ran_batched} of {len(b)} batched-run records say batched")


def agreement(checkout: Path, study: str, k: int) -> None:
    """The study unbatched, then batched ``k`` jobs per launch: each one's figures, the
    per-configuration agreement, and ``benchbench compare`` both ways (Welch t-test on the repeats)."""
    with tempfile.TemporaryDirectory() as t:
        one, many = Path(t, "unbatched"), Path(t, "batched")
        print_workflow(study, run_workflow(checkout, study, 1, one))
        print_workflow(study, run_workflow(checkout, study, k, many), f", {k} jobs per launch")
        print(f"batched vs unbatched ({study} study):")
        print_agreement(one, many)
        for base, new in ((one, many), (many, one)):
            cmd = [sys.executable, "-m", "benchbench", "compare", str(_study_dir(base)), str(_study_dir(new))]
            proc = subprocess.run(cmd, env=_env(checkout), capture_output=True, text=True)
            verdict = "no configuration slower" if proc.returncode == 0 else "a configuration slower, or missing"
            print(f"  benchbench compare {base.name} {new.name}: exit {proc.returncode} ({verdict})")
            print("    " + "\n    ".join(proc.stdout.strip().splitlines()[-12:]))


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_single(results: dict[str, list[tuple[float, float, float]]]) -> None:
    """Per case: end to end (min, median), timed steps, overhead (min end to end - timed), CPU
    seconds of all the job's processes (median), target."""
    print("single jobs (tiny GPT, 1 warm-up + 1 timed step), s:")
    print(f"  {'case':8} {'e2e min':>8} {'e2e med':>8} {'timed':>8} {'overhead':>9} {'CPU med':>8}  target")
    for name, rows in results.items():
        walls = [w for w, _, _ in rows]
        timed = statistics.median(t for _, t, _ in rows)
        cpu = statistics.median(c for _, _, c in rows)
        target = SINGLE[name][2]
        print(
            f"  {name:8} {min(walls):8.2f} {statistics.median(walls):8.2f} {timed:8.4f} "
            f"{min(walls) - timed:9.2f} {cpu:8.2f}  <= {target:g} s: {_verdict(min(walls) <= target)}"
        )


def print_workflow(study: str, w: dict[str, float], batched: str = "") -> None:
    """The study's wall, timed share, overhead per job, targets (the default study's, unbatched);
    ``batched``: how it was batched, for the heading."""
    share = w["timed"] / w["wall"] if w["wall"] else 0.0
    per_job = (w["wall"] - w["timed"]) / max(w["jobs"], 1)
    print(
        f"workflow ({study} study{batched}, snakemake, every rule): {w['wall']:.1f} s wall, "
        f"{w['jobs']:.0f} bench jobs, "
        f"timed steps {w['timed']:.1f} s = {100 * share:.1f} % of the wall time; "
        f"overhead {per_job:.2f} s per job (jobs' own end-to-end: {w['job_walls']:.1f} s)"
    )
    if study == "default" and not batched:
        print(
            f"  target wall <= {STUDY_TARGET_S:g} s: {_verdict(w['wall'] <= STUDY_TARGET_S)}; "
            f"timed share >= {100 * SHARE_TARGET:g} %: {_verdict(share >= SHARE_TARGET)}"
        )


def main(argv: list[str] | None = None) -> int:
    """Measure and print; exit 0 (targets are reported, not enforced)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="runs of each single job (default 3)")
    p.add_argument("--workflow", choices=[*STUDIES, "none"], default="default", help="study to run in Snakemake")
    p.add_argument("--checkout", type=Path, default=ROOT, help="the benchbench checkout to measure")
    p.add_argument("--batch", type=int, default=4, help="jobs of the batched case (default 4; 0: skip it)")
    p.add_argument("--jobs-per-launch", type=int, default=1, help="run the workflow batched (default 1: not)")
    p.add_argument(
        "--agreement",
        type=int,
        default=0,
        metavar="K",
        help="run the workflow unbatched and with K jobs per launch, and compare their timings",
    )
    args = p.parse_args(argv)
    checkout = args.checkout.resolve()
    print(f"checkout {checkout}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs at the start")
    print_single(single_jobs(checkout, args.runs))
    if args.batch > 1:
        print_batched(args.batch, batched(checkout, args.runs, args.batch))
    if args.workflow != "none" and args.agreement > 1:
        agreement(checkout, args.workflow, args.agreement)
    elif args.workflow != "none":
        k = args.jobs_per_launch
        label = f", {k} jobs per launch" if k > 1 else ""
        print_workflow(args.workflow, run_workflow(checkout, args.workflow, k), label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
