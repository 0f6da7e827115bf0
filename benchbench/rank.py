"""The process of one rank: ``python -m benchbench.rank --job-file F --out O --err-dir D``.

Started by :mod:`benchbench.launch` (directly, under torchrun, or by srun). It learns who it is
(:mod:`benchbench.rendezvous`), joins the process group when the plan needs one, trains
(:func:`benchbench.train.run_rank`), and rank 0 writes the ok record to ``--out``. A rank that
raises writes its traceback to ``<err-dir>/rank<R>.err`` and exits non-zero, so the launcher
tears the job down and the parent records the failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from benchbench.rendezvous import RankEnv, init_distributed, rank_env


def _run(job_file: Path, out: Path, env: RankEnv) -> None:
    import torch.distributed as dist

    from benchbench.job import Job
    from benchbench.record import write_record
    from benchbench.train import run_rank, setup_device

    job = Job.from_dict(json.loads(job_file.read_text()))
    device = setup_device(job, env)  # before the group: NCCL binds this rank to its GPU
    if job.distributed:
        init_distributed(env, job.hardware_cfg.backend, job.timeout_s, device if device.type == "cuda" else None)
    record = run_rank(job, env, device)
    if record is not None:
        write_record(record, out)
    if dist.is_initialized():
        dist.barrier()  # every rank is done with the group before any rank tears it down


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchbench.rank")
    parser.add_argument("--job-file", required=True, type=Path, help="the job as JSON (Job.to_dict)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--err-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    env = RankEnv(int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or 0))
    try:
        env = rank_env()
        _run(args.job_file, args.out, env)
    except BaseException as exc:
        args.err_dir.mkdir(parents=True, exist_ok=True)
        (args.err_dir / f"rank{env.rank}.err").write_text(f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        return 1
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
