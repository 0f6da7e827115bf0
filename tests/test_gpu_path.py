"""The CUDA path's decisions, on a machine without a GPU: which device a rank takes, that the
device is chosen before the NCCL group forms and handed to it, and which tolerance the gate applies
on GPU. Device calls are faked only where no GPU can answer (``torch.cuda`` counts and setters);
scripts/gpu-check.sh runs the real path on a GPU machine."""

import json

import pytest
import torch

from benchbench import rank as rank_entry
from benchbench.hardware import load_hardware
from benchbench.rendezvous import RankEnv
from benchbench.train import setup_device
from benchbench.verify import tolerance_for
from tests.conftest import make_test_job

H200 = load_hardware("h200-sxm")


@pytest.fixture
def gpus(monkeypatch):
    chosen = []

    def visible(n):
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
        return chosen

    return visible


@pytest.mark.parametrize(("local_rank", "visible", "index"), [(0, 8, 0), (3, 8, 3), (1, 1, 0), (5, 1, 0)])
def test_rank_takes_its_gpu_among_the_visible_ones(gpus, local_rank, visible, index):
    chosen = gpus(visible)  # visible = 1: Slurm bound one GPU to each task
    device = setup_device(make_test_job("ddp", 8, hardware_cfg=H200), RankEnv(local_rank, 8, local_rank, "srun"))
    assert device == torch.device("cuda", index) and chosen == [device]


def test_more_local_ranks_than_gpus_is_an_error(gpus):
    gpus(2)
    with pytest.raises(RuntimeError, match="local rank 2 but only 2 GPUs visible"):
        setup_device(make_test_job("ddp", 4, hardware_cfg=H200), RankEnv(2, 4, 2, "torchrun"))


def test_device_is_set_before_the_nccl_group_and_handed_to_it(monkeypatch, tmp_path):
    calls, gpu = [], torch.device("cuda", 0)  # a device descriptor: no GPU needed to make one
    monkeypatch.setattr("benchbench.train.setup_device", lambda job, env: calls.append("device") or gpu)
    monkeypatch.setattr(rank_entry, "init_distributed", lambda *a: calls.append(("group", a[1], a[3])))
    monkeypatch.setattr("benchbench.train.run_rank", lambda job, env, device: calls.append(("run", device)))
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(make_test_job("ddp", 2, hardware_cfg=H200).to_dict()))
    rank_entry._run(job_file, tmp_path / "out.json", RankEnv(0, 2, 0, "torchrun"))
    assert calls == ["device", ("group", "nccl", gpu), ("run", gpu)]


@pytest.mark.parametrize(
    ("dtype", "tf32", "changes", "tol"),
    [("fp32", False, {}, 1e-4), ("fp32", True, {}, 2e-2), ("bf16", True, {}, 5e-2),
     ("fp32", True, {"compression": "fp16"}, 1e-2)],
)  # fmt: skip
def test_gate_tolerance_on_gpu_follows_precision(dtype, tf32, changes, tol):
    job = make_test_job("ddp", 2, hardware_cfg=H200, dtype=dtype)
    if changes:
        job = job.replace(plan={**job.plan.to_dict(), **changes})
    assert tolerance_for(job, tf32).rel == tol
