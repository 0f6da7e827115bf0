"""Entry point of one rank: ``python -m benchbench.worker --spec-file F --out O --err-dir D``.

Started by :mod:`benchbench.launch` (directly, or under torchrun). Rank 0 writes the ok record
to ``--out``; a rank that raises writes its traceback to ``<err-dir>/rank<R>.err`` and exits
non-zero, so the launcher tears the job down and the parent records the failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

import torch.distributed as dist

from benchbench.launch import RankEnv, init_distributed, rank_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchbench.worker")
    parser.add_argument("--spec-file", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--err-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    env = RankEnv(int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or 0))
    try:
        env = rank_env()
        from benchbench.bench import run_rank
        from benchbench.record import write_record

        job = json.loads(args.spec_file.read_text())
        if not job["plan"].get("single_process"):
            hw = job.get("hardware_cfg", {})
            init_distributed(env, hw.get("backend", "gloo"), float(job.get("timeout_s", 900)))
        record = run_rank(job, env)
        if record is not None:
            write_record(record, args.out)
        if dist.is_initialized():
            dist.barrier()  # every rank is done with the group before any rank tears it down
    except BaseException as exc:
        args.err_dir.mkdir(parents=True, exist_ok=True)
        (args.err_dir / f"rank{env.rank}.err").write_text(f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
