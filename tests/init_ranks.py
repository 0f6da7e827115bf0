"""Run by torchrun from tests/test_memory.py (not a test module): every rank builds the job's plan
(meta-device construction, sharding, then initialisation of the local shards) and rank 0 checks
that the gathered weights are bit-identical to the single-process model's. Argument: a job JSON
file; rank 0 writes "ok" or what differs to the file named in the second argument."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from benchbench.models.registry import make_task
from benchbench.rank.gate import canonical_name
from benchbench.spec.job import Job
from benchbench.strategies.parallelize import parallelize, seeded_model


def main(job_file: str, out: str) -> None:
    job = Job.from_dict(__import__("json").loads(Path(job_file).read_text()))
    dist.init_process_group("gloo")
    p = parallelize(job, torch.device("cpu"), make_task(job.model_cfg, job.seed).loss_fn)
    mine = {}
    for module in p.modules:
        for name, param in module.named_parameters():
            full = param.full_tensor() if hasattr(param, "full_tensor") else param
            mine[canonical_name(name)] = full.detach().clone()
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    if dist.get_rank() == 0:
        ref = dict(seeded_model(job, torch.device("cpu")).named_parameters())
        got = {k: v for d in gathered for k, v in d.items()}
        bad = sorted(set(ref) ^ set(got)) or [n for n in ref if not torch.equal(ref[n].detach(), got[n])]
        Path(out).write_text("ok" if not bad else f"differ: {bad[:5]}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
