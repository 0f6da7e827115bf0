"""The process of one rank: ``python -m benchbench.rank.main --job-file F --out O --err-dir D``.

Started by :mod:`benchbench.launch.run_job` (directly, under torchrun, or by srun). It learns who it is
(:mod:`benchbench.rank.rendezvous`), joins the process group when the plan needs one, trains
(:func:`benchbench.rank.loop.run_rank`), and rank 0 writes the ok record to ``--out``. A rank that
raises writes its traceback to ``<err-dir>/rank<R>.err`` and what the parent classifies
(:class:`benchbench.protocol.failure.RankError`) to ``rank<R>.json``, and exits non-zero, so the launcher
tears the job down and the parent records the failure. Every rank writes heartbeats to
``<err-dir>/hb/`` (:mod:`benchbench.protocol.heartbeat`) and dies with its parent process, the launcher
(:mod:`benchbench.protocol.lifeline`).

This module imports only what the heartbeat and the error files need: the rank's run (torch, the
strategies, the job's schema: seconds of imports) is imported inside the functions that run it,
after the heartbeat has started, so the parent's watchdog sees the rank from its first second.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchbench.protocol import heartbeat
from benchbench.protocol.lifeline import STARTED_FILE, die_with_parent, exit_now
from benchbench.rank.rendezvous import RankEnv, init_distributed, rank_env


def _write_error(err_dir: Path, rank: int, exc: BaseException) -> None:
    """``rank<R>.err`` (the traceback, for people) and ``rank<R>.json`` (for the parent's classifier)."""
    err_dir.mkdir(parents=True, exist_ok=True)
    text = traceback.format_exc()
    (err_dir / f"rank{rank}.err").write_text(f"{type(exc).__name__}: {exc}\n\n{text}")
    phase, steps = heartbeat.where()
    line = " ".join(f"{type(exc).__name__}: {exc}".split())[:1000]  # the traceback's last line, on one line
    info = {"rank": rank, "type": type(exc).__name__, "line": line, "phase": phase, "step": steps, "time": time.time()}
    (err_dir / f"rank{rank}.json").write_text(json.dumps(info))


def join(job: Any, env: RankEnv) -> Any:
    """This rank's device (set up before the group: NCCL binds the rank to its GPU) and, for a
    distributed job, the process group; heartbeat phases ``rendezvous`` then ``build``."""
    from benchbench.rank.loop import setup_device

    device = setup_device(job, env)
    if job.distributed:
        heartbeat.phase("rendezvous")
        cuda = device if device.type == "cuda" else None
        init_distributed(env, job.hardware_cfg.backend, job.collective_timeout_s, cuda)
    heartbeat.phase("build")
    return device


def leave() -> None:
    """Every rank is done with the group before any rank tears it down; heartbeat phase ``done``."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
    heartbeat.phase("done")


def _run(job_file: Path, out: Path, env: RankEnv) -> None:
    from benchbench.protocol.record import write_record
    from benchbench.rank.loop import run_rank
    from benchbench.spec.job import Job

    job = Job.from_dict(json.loads(job_file.read_text()))
    device = join(job, env)
    record = run_rank(job, env, device)
    if record is not None:
        write_record(record, out)
    leave()


def _run_batch(batch_file: Path, env: RankEnv, current: dict[str, Path]) -> None:
    """A batched launch (``--batch F``): the jobs of ``F`` (a JSON list of ``{job, out, err_dir,
    index, size}``, same world size, hardware and threads) one after another in this process,
    joining the process group once. Each job moves the heartbeat and the error files to its own
    ``err_dir`` (``current``), trains (:func:`~benchbench.rank.loop.run_rank`: its own timing,
    peak-memory reset and verification), and rank 0 writes its record, ``env.batch`` set; all
    ranks then meet at a barrier. A job that raises ends the launch (the parent records it and
    relaunches the rest)."""
    from benchbench.protocol.record import write_record
    from benchbench.rank.loop import run_rank, setup_device
    from benchbench.spec.job import Job

    device = None
    for entry in json.loads(batch_file.read_text()):
        current["err_dir"] = Path(entry["err_dir"])
        if env.rank == 0:  # the job's start, for its wall time (benchbench.launch.batch: the parent's host clock)
            (current["err_dir"] / STARTED_FILE).write_text(f"{time.time():.6f}")
        heartbeat.start(current["err_dir"], env.rank)
        job = Job.from_dict(entry["job"])
        if device is None:
            device = join(job, env)
        else:
            setup_device(job, env)
            heartbeat.phase("build")
        record = run_rank(job, env, device)
        if record is not None:
            record["env"]["batch"] = {"index": entry["index"], "size": entry["size"]}
            write_record(record, entry["out"])
        leave()
        _between_jobs(device)


def _between_jobs(device: Any) -> None:
    """After a batch's job: free what it left (its objects; on GPU the allocator's cached blocks,
    on CPU the heap glibc keeps, so the next job's peak memory starts from what it would alone)
    and drop torch.compile's caches (if it was used), so that its compiled graphs neither count
    against the next job's recompile limit nor serve it."""
    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()
    elif sys.platform.startswith("linux"):
        try:  # give the freed heap back to the kernel: the next job's peak RSS starts from the baseline
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):
            pass
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is not None:
        dynamo.reset()


def main(argv: list[str] | None = None, body: Callable[[Path, Path, RankEnv], None] | None = None) -> int:
    """One rank: heartbeat, identity, ``body(job_file, out, env)`` (default: train the job), the
    error files on any exception; another entry point (``benchbench.rank.calibrate``)
    passes its own ``body`` and gets the same error handling and teardown."""
    parser = argparse.ArgumentParser(prog="benchbench.rank.main")
    parser.add_argument("--job-file", type=Path, help="the job as JSON (Job.to_dict)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--err-dir", type=Path)
    parser.add_argument("--batch", type=Path, help="a batched launch: its jobs as JSON (see _run_batch)")
    args = parser.parse_args(argv)
    if args.batch is None and None in (args.job_file, args.out, args.err_dir):
        parser.error("--job-file, --out and --err-dir are required without --batch")
    die_with_parent()
    env = RankEnv(int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or 0))
    current = {"err_dir": args.err_dir}
    try:
        if args.batch is not None:  # until the first job starts, failures are the first job's
            current["err_dir"] = Path(json.loads(args.batch.read_text())[0]["err_dir"])
        heartbeat.start(current["err_dir"], env.rank)
        env = rank_env()
        if args.batch is None:
            (body or _run)(args.job_file, args.out, env)
        else:
            _run_batch(args.batch, env, current)
    except BaseException as exc:
        if current["err_dir"] is not None:
            _write_error(current["err_dir"], env.rank, exc)
        return 1
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    exit_now(main())  # outputs are written: skip the interpreter's teardown (seconds with torch loaded)
