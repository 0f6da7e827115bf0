"""The CUDA path's decisions, on a machine without a GPU: which device a rank takes, that the
device is chosen before the NCCL group forms and handed to it, and which tolerance the gate applies
on GPU. Device calls are faked only where no GPU can answer (``torch.cuda`` counts and setters);
scripts/gpu-check.sh runs the real path on a GPU machine."""

import json

import pytest
import torch

from benchbench.rank import main as rank_entry
from benchbench.rank.gate import tolerance_for
from benchbench.rank.loop import setup_device
from benchbench.rank.rendezvous import RankEnv
from benchbench.spec.hardware import load_hardware
from tests.helpers.jobs import make_test_job

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
    monkeypatch.setattr("benchbench.rank.loop.setup_device", lambda job, env: calls.append("device") or gpu)
    monkeypatch.setattr(rank_entry, "init_distributed", lambda *a: calls.append(("group", a[1], a[3])))
    monkeypatch.setattr("benchbench.rank.loop.run_rank", lambda job, env, device: calls.append(("run", device)))
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(make_test_job("ddp", 2, hardware_cfg=H200).to_dict()))
    rank_entry._run(job_file, tmp_path / "out.json", RankEnv(0, 2, 0, "torchrun"))
    assert calls == ["device", ("group", "nccl", gpu), ("run", gpu)]


@pytest.mark.parametrize(
    ("dtype", "tf32", "changes", "tol"),
    [
        ("fp32", False, {}, 1e-4),
        ("fp32", True, {}, 2e-2),
        ("bf16", True, {}, 5e-2),
        ("fp32", True, {"compression": "fp16"}, 1e-2),
        ("bf16", True, {"float8": True}, 0.25),
        ("bf16", True, {"float8": True, "compression": "fp16"}, 0.25),
    ],
)
def test_gate_tolerance_on_gpu_follows_precision(dtype, tf32, changes, tol):
    job = make_test_job("ddp", 2, hardware_cfg=H200, dtype=dtype)
    if changes:
        job = job.replace(plan={**job.plan.to_dict(), **changes})
    assert tolerance_for(job, tf32).rel == tol


CPU_FAILURES = """
import sys, torch, torch.distributed as dist, torch.nn.functional as F
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.experimental import context_parallel
import torch.distributed._symmetric_memory as sm
q = torch.randn(1, 2, 8, 4)
try:
    with context_parallel(init_device_mesh("cpu", (1,)), buffers=[q], buffer_seq_dims=[2]):
        F.scaled_dot_product_attention(q, q, q, is_causal=True)
    print("cp: ran")
except Exception as e:
    print("cp:", type(e).__name__, e)
try:
    sm.empty(16, device="cpu")
    print("symm: ran")
except Exception as e:
    print("symm:", type(e).__name__, e)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_the_cpu_drop_reasons_are_what_torch_says_on_cpu(tmp_path):
    """The reasons study expansion drops context parallel and async TP with on CPU quote torch's own
    failures there (one gloo rank): if a torch release makes either run on CPU, this fails and the
    drop must go (gpu_features.py)."""
    import subprocess
    import sys

    from benchbench.spec.gpu_features import device_reason
    from benchbench.spec.hardware import load_hardware
    from benchbench.spec.plan import resolve_plan

    out = subprocess.run(
        [sys.executable, "-c", CPU_FAILURES, str(tmp_path / "store")], capture_output=True, text=True, timeout=120
    ).stdout
    cpu = load_hardware("cpu-local")
    cp, symm = (line for line in out.splitlines() if line.startswith(("cp:", "symm:")))
    assert "NotImplementedError" in cp and "_scaled_dot_product_flash_attention_for_cpu" in cp, out
    assert "aten._scaled_dot_product_flash_attention_for_cpu has no sharding strategy" in device_reason(
        resolve_plan("cp", 2), cpu
    )
    assert "SymmetricMemory does not support device type cpu" in symm, out
    assert "SymmetricMemory does not support device type cpu" in device_reason(resolve_plan("tp-async", 2), cpu)


def test_the_cp_position_buffer_and_the_float8_filter_on_cpu():
    """What of the GPU-only steps runs without a GPU: context parallel's position buffer gives the
    embedding the same output as ``arange`` while unsharded (the ring then shards it with the
    tokens), and float8's filter converts the blocks' Linears but not the head."""
    from benchbench.models.build import build_model
    from benchbench.models.weights import materialize
    from benchbench.strategies.context_parallel import apply_cp
    from benchbench.strategies.float8 import keep_in_float8

    cfg = {"arch": "gpt", "layers": 2, "hidden": 32, "heads": 2, "seq_len": 16, "vocab": 64}
    model = materialize(build_model(cfg), torch.device("cpu"), 0)
    x = torch.randint(0, 64, (2, 16))
    before = model(x)

    class Mesh:  # apply_cp reads the size only; the context itself needs CUDA
        def size(self):
            return 2

    step = apply_cp(model, Mesh(), 16, torch.device("cpu"))
    assert step.cp_size == 2 and torch.equal(model(x), before)
    model.embed.cp_positions.copy_(torch.arange(15, -1, -1))  # a reordering changes the output: it is used
    assert not torch.equal(model(x), before)
    converted = {n for n, m in model.named_modules() if keep_in_float8(m, n)}
    assert "blocks.0.attn.q" in converted and "blocks.1.mlp.fc2" in converted and "head" not in converted


@pytest.mark.parametrize("changes", [{"float8": True}, {"float8": True, "activation_checkpoint": "full"}])
def test_the_single_process_path_applies_the_plans_model_steps(monkeypatch, changes):
    """A single-process plan (``{base: single, float8: true}`` expands on a float8 GPU) runs the
    same model steps as the distributed path: float8 is not dropped silently on the one-process
    path while the record calls the plan lossy (torchao swapped for a marker: CPU)."""
    from dataclasses import replace

    import torch

    from benchbench.strategies import parallelize as par
    from benchbench.strategies.checkpointing import MARK

    def mark(model):
        model._benchbench_float8 = True
        return model

    monkeypatch.setattr(par, "apply_float8", mark)
    job = make_test_job("single", 1)
    job = job.replace(plan=replace(job.plan, **changes))
    (model,) = par.parallelize(job, torch.device("cpu"), lambda out, y: out.sum()).modules
    assert getattr(model, "_benchbench_float8", False), "float8 ignored on the single-process path"
    checkpointed = all(getattr(b, MARK, False) for b in model.blocks.values())
    assert checkpointed == (changes.get("activation_checkpoint") == "full")
    reference = par.materialize(par.build_model(job.model_cfg), torch.device("cpu"), job.seed)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters(), strict=True))
