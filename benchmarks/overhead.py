"""benchbench's timing overhead: its timed loop against a bare PyTorch loop, in the same processes.

    PYTHONPATH=. .venv/bin/python benchmarks/overhead.py [--steps 3 --rounds 12 --model default]

The default study's ``mlp-8m`` (config/config.yaml: width 1024, depth 8, out_dim 16, global batch
1024) with DDP on 2 ranks (gloo, 1 thread per rank). Each rank holds two copies of the job:

* **bare** — the loop a user writes: ``DistributedDataParallel(model)`` with the plan's bucket
  size, AdamW with the same settings; per step a barrier, then ``perf_counter`` around
  ``zero_grad / forward / loss / backward / step``;
* **benchbench** — ``benchbench.rank.loop.timed_loop`` over ``benchbench.rank.train_step.build_trainer`` of
  the same job (the code a benchmark job runs).

After warm-up, ``--rounds`` rounds alternate the two (ABBA order: neither always runs first), each
``--steps`` steps on the same batches. A step's time is the slowest rank's, as in the records. It
prints the median step time of each, their ratio benchbench / bare, and a 95 % paired interval
of the ratio (bootstrap over rounds, both variants' steps of a round resampled together). The
target: ratio <= 1.01. On a shared machine the figures are noisy; compare runs with care.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchbench.models.build import build_model
from benchbench.models.registry import make_task
from benchbench.models.weights import init_weights
from benchbench.rank.loop import make_batches, timed_loop
from benchbench.rank.train_step import build_trainer
from benchbench.spec.config import load_config
from benchbench.spec.job import Job, make_job

TARGET = 1.01
TINY = {"arch": "mlp", "width": 64, "depth": 2, "out_dim": 4, "batch_size": 32}  # --model tiny: a smoke run


def the_job(model: str, steps: int) -> Job:
    """The default study's ddp job at 2 ranks (``model``: default = mlp-8m, or tiny)."""
    cfg = load_config()
    cfg["models"] = {"mlp-8m": cfg["models"]["mlp-8m"]} if model == "default" else {"tiny": dict(TINY)}
    job, reason = make_job(cfg, next(iter(cfg["models"])), "cpu-local", "ddp", 2, 0)
    assert reason is None, reason
    return job.replace(steps=steps, warmup_steps=0)


class Bare:
    """A plain DDP training loop, as a user would write it."""

    def __init__(self, job: Job, loss_fn) -> None:
        model = init_weights(build_model(job.model_cfg, "cpu"), job.seed)  # benchbench's initial weights
        self.model = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=job.plan.bucket_cap_mb)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=job.lr, weight_decay=0.0)
        self.loss_fn = loss_fn

    def run(self, batches: list) -> list[float]:
        times = []
        for x, y in batches:
            dist.barrier()
            t0 = time.perf_counter()
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(x), y)
            loss.backward()
            self.opt.step()
            times.append(time.perf_counter() - t0)
        return times


def slowest_rank(times: list[float]) -> list[float]:
    """Each step's time on the slowest rank (MAX all-reduce, after the steps, untimed)."""
    t = torch.tensor(times, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def rank_main(rank: int, args: argparse.Namespace, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    job = the_job(args.model, args.steps)
    task = make_task(job.model_cfg, job.seed)
    batches = make_batches(job, task, rank, torch.device("cpu"))
    bare, bench = Bare(job, task.loss_fn), build_trainer(job, torch.device("cpu"), task.loss_fn)
    run = {
        "bare": bare.run,
        "benchbench": lambda b: timed_loop(bench, b, torch.device("cpu"), True).times,
    }
    for name in run:  # warm-up: DDP rebuilds its buckets after the first step
        run[name](batches[:1] * args.warmup)
    rounds: dict[str, list[list[float]]] = {name: [] for name in run}
    for r in range(args.rounds):
        order = list(run) if r % 4 in (0, 3) else list(run)[::-1]  # ABBA
        for name in order:
            rounds[name].append(run[name](batches))
    rounds = {name: [slowest_rank(t) for t in ts] for name, ts in rounds.items()}
    if rank == 0:
        report(rounds, args)
    dist.destroy_process_group()


def ratio_interval(bare: np.ndarray, bench: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of median(bench) / median(bare), resampling rounds
    (rows: one round's steps of each variant, kept together)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(bare), size=(n, len(bare)))
    ratios = [np.median(bench[i]) / np.median(bare[i]) for i in idx]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def report(rounds: dict[str, list[list[float]]], args: argparse.Namespace) -> None:
    bare, bench = np.array(rounds["bare"]), np.array(rounds["benchbench"])
    med_bare, med_bench = float(np.median(bare)), float(np.median(bench))
    ratio = med_bench / med_bare
    low, high = ratio_interval(bare, bench)
    per_round = np.median(bench, axis=1) / np.median(bare, axis=1)
    print(f"model {args.model}, ddp, 2 ranks x 1 thread, gloo; {args.rounds} rounds x {args.steps} steps, ABBA")
    print(f"median step time  bare {med_bare * 1e3:.2f} ms   benchbench {med_bench * 1e3:.2f} ms")
    print(f"ratio benchbench/bare {ratio:.4f}  (95% paired bootstrap over rounds: {low:.4f} .. {high:.4f})")
    print(f"per-round ratios (median {np.median(per_round):.4f}): {' '.join(f'{x:.3f}' for x in per_round)}")
    met = "met" if ratio <= TARGET else "NOT met"
    print(f"target ratio <= {TARGET}: {met} (interval upper bound {'<=' if high <= TARGET else '>'} {TARGET})")
    sys.stdout.flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round and variant")
    ap.add_argument("--rounds", type=int, default=12, help="rounds, each variant once per round")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps of each variant first")
    ap.add_argument("--model", choices=["default", "tiny"], default="default")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    mp.spawn(rank_main, args=(args, free_port()), nprocs=2, join=True)
    print(f"wall {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
