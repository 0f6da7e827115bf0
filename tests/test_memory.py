"""Memory that shows sharding (benchbench/rank/measure/memory.py, the estimates in
benchbench/costmodel/memory.py): exact per-rank model-state and saved-activation bytes against the
analytic estimates, the peak reset, and meta-device construction giving every plan the
single-process run's initial weights bit for bit."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from benchbench.costmodel import memory as estimates
from benchbench.launch.run_job import run_job
from benchbench.models.build import build_model
from benchbench.models.presets import PRESETS
from benchbench.models.registry import make_task, model_info
from benchbench.models.weights import materialize
from benchbench.rank.measure import memory
from benchbench.spec.config import ROOT
from benchbench.spec.schedules import compute_order
from tests.helpers.jobs import TINY_GPT, make_test_job

MLP = {"arch": "mlp", "width": 32, "depth": 3, "out_dim": 32}  # ZeRO-1 splits its 8 tensors evenly
GPT = dict(TINY_GPT, layers=4, heads=4)
STEP_COUNTER = 4  # AdamW's `step`: one fp32 scalar per parameter tensor with state (not in the estimate)


def n_tensors(cfg: dict) -> int:
    return len(list(build_model(cfg).parameters()))


# ------------------------------------------------------------------------------ in one process


def test_peak_reset_forgets_an_earlier_peak():
    big = torch.ones(100 * 2**20 // 4)  # 100 MiB, touched
    del big
    before = memory.read_peak_mb(torch.device("cpu"), "rss")
    source = memory.reset_peak(torch.device("cpu"))
    if source != "rss_hwm_reset":
        pytest.skip("/proc/self/clear_refs is not writable here")
    after = memory.read_peak_mb(torch.device("cpu"), source)
    assert after < before - 50  # the 100 MiB peak is gone
    small = torch.ones(30 * 2**20 // 4)
    assert memory.read_peak_mb(torch.device("cpu"), source) >= after + 25  # and a new one is seen
    del small


def test_storages_shared_by_views_count_once():
    """DDP's gradient_as_bucket_view: every gradient a view into one flat buffer: counted once."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    n = sum(p.numel() for p in model.parameters())
    bucket = torch.zeros(n)
    offset = 0
    for p in model.parameters():
        p.grad = bucket[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    got = memory.model_state_bytes([model], torch.optim.SGD(model.parameters(), lr=0.1))
    assert got == {"param_bytes": 4 * n, "grad_bytes": 4 * n, "optim_state_bytes": 0, "model_state_bytes": 8 * n}


@pytest.mark.parametrize("cfg", [TINY_GPT, MLP])
def test_one_process_counts_equal_the_estimates(cfg):
    job = make_test_job("single", 1, model_cfg=dict(cfg))
    model = materialize(build_model(cfg), torch.device("cpu"), 0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    task = make_task(cfg, 0)
    x, y = task.batch(0, job.global_batch)
    with memory.SavedActivations() as saved:
        task.loss_fn(model(x), y).backward()
    opt.step()
    state = memory.model_state_bytes([model], opt)
    assert saved.bytes == estimates.activation_estimate(job)
    assert state["model_state_bytes"] == estimates.model_state_estimate(job) + STEP_COUNTER * n_tensors(cfg)
    assert state["param_bytes"] == 4 * model_info(cfg).params


LLAMA = {"arch": "llama", **PRESETS["llama"]["tiny"]}


@pytest.mark.parametrize("cfg", [GPT, LLAMA], ids=["gpt", "llama"])
@pytest.mark.parametrize("ac", ["none", "full"])
def test_bf16_autocast_saves_as_estimated_and_the_peak_held_is_the_total(cfg, ac):
    """One process under CPU bf16 autocast: the saved bytes are the estimate's (matmul outputs and
    each matmul's cast of an fp32 input in bf16; norms, log-sum-exp, log-softmax in fp32), and with
    one forward the most held at once is all of it; after backward nothing is held."""
    from benchbench.strategies.checkpointing import apply_ac

    job = make_test_job("single", 1, model_cfg=dict(cfg), dtype="bf16", seq_len=cfg["seq_len"])
    job = job.replace(plan=replace(job.plan, activation_checkpoint=ac))
    model = apply_ac(materialize(build_model(cfg), torch.device("cpu"), 0), ac, 1)
    task = make_task(cfg, 0)
    x, y = task.batch(0, job.global_batch)
    with memory.SavedActivations() as saved:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = task.loss_fn(model(x), y)
        loss.backward()
        del loss
        assert saved.held_bytes == 0
    assert saved.bytes == saved.peak_bytes == estimates.activation_estimate(job)
    assert saved.peak_bytes == estimates.activation_peak_estimate(job)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_the_loss_gradients_raise_the_peak_as_estimated(dtype):
    """At a large vocabulary the loss's backward holds two fp32 logits-sized gradients beside the
    saved tensors: the process's peak resident set (tensors of 41 MB: malloc maps and unmaps
    them, so the resident set follows them) rises above the saved peak by the estimate's
    8·s·b·V bytes, within 3 % (other saved tensors are freed by then)."""
    cfg = {"arch": "gpt", "layers": 1, "hidden": 32, "heads": 2, "seq_len": 64, "vocab": 20_000}
    job = make_test_job("single", 1, model_cfg=cfg, dtype=dtype, seq_len=64, global_batch=8)
    model = materialize(build_model(cfg), torch.device("cpu"), 0)
    task = make_task(cfg, 0)
    x, y = task.batch(0, 8)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    for _ in range(2):  # gradients allocated, first-use allocations made
        with autocast:
            loss = task.loss_fn(model(x), y)
        loss.backward()
        del loss
    with open(memory.STATUS) as f:
        base = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    if memory.reset_peak(torch.device("cpu")) != "rss_hwm_reset":
        pytest.skip("/proc/self/clear_refs is not writable here")
    with memory.SavedActivations() as saved:
        with autocast:
            loss = task.loss_fn(model(x), y)
        loss.backward()
        del loss
    above = memory.read_peak_mb(torch.device("cpu"), "rss_hwm_reset") * 2**20 - base - saved.peak_bytes
    mem = estimates.memory_estimate(job)
    assert mem.transient_bytes == estimates.loss_transient(job, 8) == 8 * 64 * 8 * 20_000
    assert abs(above / mem.transient_bytes - 1) < 0.03, above / mem.transient_bytes


def test_interleaved_order_is_torchs():
    """The forward/backward order the peak estimate replays for interleaved 1F1B is the action
    list torch's ScheduleInterleaved1F1B computes, for every rank of several (p, m, v)."""
    from torch.distributed.pipelining.schedules import ScheduleInterleaved1F1B, _ComputationType

    for p, m, v in [(2, 4, 2), (4, 8, 2), (4, 4, 2), (3, 6, 3), (4, 16, 4), (2, 8, 2)]:
        sched = ScheduleInterleaved1F1B.__new__(ScheduleInterleaved1F1B)  # the order alone, no stages
        sched.n_local_stages, sched.pp_group_size, sched._n_microbatches = v, p, m
        sched.number_of_rounds = max(1, m // p)
        sched.microbatches_per_round = m // sched.number_of_rounds
        for r in range(p):
            actions = [a for a in sched._calculate_single_rank_operations(r) if a is not None]
            torch_order = [(a.stage_index, a.computation_type == _ComputationType.FORWARD) for a in actions]
            assert torch_order == compute_order("interleaved-1f1b", r, p, m, v), (p, m, v, r)


def test_checkpointing_saves_less_and_its_recompute_counts_as_hardware_flops():
    """Activation checkpointing of a 4-block gpt in one process: the saved bytes fall none >
    selective (every 2nd block) > full, each exactly as estimated (a checkpointed block keeps its
    input alone); the executed (hardware) FLOPs rise by the recompute, at most one forward of the
    checkpointed blocks; gradients are unchanged; model FLOPs (analytic) do not depend on the plan."""
    from benchbench.rank.measure.probes import ExecutedFlops
    from benchbench.strategies.checkpointing import apply_ac

    task = make_task(GPT, 0)
    x, y = task.batch(0, 8)
    got = {}
    for mode in ("none", "selective", "full"):
        job = make_test_job("ddp-ac", 1, model_cfg=dict(GPT), global_batch=8)
        job = job.replace(plan=replace(job.plan, activation_checkpoint=mode, ac_every=2))
        model = apply_ac(materialize(build_model(GPT), torch.device("cpu"), 0), mode, 2)
        with memory.SavedActivations() as saved, ExecutedFlops() as flops:
            task.loss_fn(model(x), y).backward()
        assert saved.bytes == estimates.activation_estimate(job), mode
        got[mode] = (saved.bytes, flops.flops, [p.grad for p in model.parameters()])
    assert got["none"][0] > got["selective"][0] > got["full"][0]
    assert got["none"][1] < got["selective"][1] < got["full"][1]
    with torch.no_grad(), ExecutedFlops() as fwd:  # one forward of every block
        h = model.embed(x)
        for block in model.blocks.values():
            h = block(h)
    h, t, layers = GPT["hidden"], GPT["seq_len"], GPT["layers"]
    fc2 = layers * 2 * 8 * t * 4 * h * h  # each block's last matmul: torch's early stop does not rerun it
    assert got["full"][1] - got["none"][1] == fwd.flops - fc2
    assert got["selective"][1] - got["none"][1] == (fwd.flops - fc2) / 2
    for mode in ("selective", "full"):
        pairs = zip(got[mode][2], got["none"][2], strict=True)
        assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in pairs)


def test_meta_build_allocates_nothing_and_init_is_seeded_by_name():
    meta = build_model(GPT)
    assert all(p.is_meta for p in meta.parameters())
    a = dict(materialize(build_model(GPT), torch.device("cpu"), 0).named_parameters())
    b = dict(materialize(build_model(GPT), torch.device("cpu"), 0).named_parameters())
    c = dict(materialize(build_model(GPT), torch.device("cpu"), 1).named_parameters())
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["blocks.0.attn.q.weight"], c["blocks.0.attn.q.weight"])
    assert not torch.equal(a["blocks.0.attn.q.weight"], a["blocks.1.attn.q.weight"])


# ------------------------------------------------------------------------- real ranks (gloo)


def summary(tmp_path: Path, strategy: str, ws: int, cfg: dict) -> dict:
    job = make_test_job(strategy, ws, model_cfg=dict(cfg), warmup_steps=1, steps=2)
    rec, _ = run_job(job, tmp_path / f"{job.id}.json", None)
    assert rec["status"] == "ok", rec["error"]
    assert rec["summary"]["verify_verdict"] in ("match", "skipped"), rec["summary"]["verify_detail"]
    return rec["summary"]


@pytest.mark.slow
def test_model_state_falls_single_zero1_fsdp_exactly_as_estimated(tmp_path):
    """At 2 ranks on an MLP whose 8 tensors ZeRO-1 splits 4 and 4 (equal sizes) and FSDP2 splits
    without padding: 16, 4 + 4 + 8/2 and 16/2 bytes per parameter, plus the step counters of the
    tensors whose state the rank holds (8, 4, 8)."""
    p = model_info(MLP).params
    got = {s: summary(tmp_path, s, ws, MLP) for s, ws in (("single", 1), ("zero1", 2), ("fsdp", 2))}
    held = {"single": 8, "zero1": 4, "fsdp": 8}
    for s, per_param in (("single", 16), ("zero1", 12), ("fsdp", 8)):
        assert got[s]["model_state_bytes_est"] == per_param * p
        assert got[s]["model_state_bytes"] == per_param * p + STEP_COUNTER * held[s]
        assert got[s]["activation_bytes"] == got[s]["activation_bytes_est"]
    assert got["single"]["model_state_bytes"] > got["zero1"]["model_state_bytes"] > got["fsdp"]["model_state_bytes"]
    assert got["zero1"]["optim_state_bytes"] - STEP_COUNTER * 4 == 8 * p / 2
    assert got["fsdp"]["param_bytes"] == got["fsdp"]["grad_bytes"] == 4 * p / 2
    assert got["single"]["activation_bytes"] == 2 * got["fsdp"]["activation_bytes"]  # half the batch per rank
    assert got["fsdp"]["peak_mem_source"] == "rss_hwm_reset"


@pytest.mark.slow
def test_tensor_and_pipeline_ranks_hold_their_share(tmp_path):
    """TP at 2 halves exactly the split weights (12h² + 7h per block and the head's V·h); a
    pipeline rank holds only its stage (the larger: stage 0 with the embeddings, or the last with
    the head). Saved activations match the adapted Korthikanti et al. count exactly."""
    h, v, t, layers = GPT["hidden"], GPT["vocab"], GPT["seq_len"], GPT["layers"]
    single = summary(tmp_path, "single", 1, GPT)
    tp = summary(tmp_path, "tp", 2, GPT)
    pp = summary(tmp_path, "pp-1f1b", 2, GPT)
    split = layers * (12 * h * h + 7 * h) + v * h
    assert single["param_bytes"] - tp["param_bytes"] == 4 * split / 2
    half = (layers // 2) * (12 * h * h + 13 * h)
    first, last = half + (v + t) * h, half + 2 * h + v * h
    assert pp["param_bytes"] == 4 * max(first, last)
    held = {"single": n_tensors(GPT), "tp": n_tensors(GPT), "pp": 2 * 16 + 2}  # pp: stage 0, the larger
    for name, s in (("single", single), ("tp", tp), ("pp", pp)):
        assert s["activation_bytes"] == s["activation_bytes_est"]
        assert s["model_state_bytes"] == s["model_state_bytes_est"] + STEP_COUNTER * held[name]


@pytest.mark.slow
@pytest.mark.parametrize(("strategy", "ws"), [("fsdp", 2), ("tp", 2), ("pp-zbv", 2), ("fsdp-tp", 4), ("cp", 2)])
def test_sharding_plans_start_from_the_single_process_weights_bit_for_bit(tmp_path, strategy, ws):
    """Built on meta, sharded, then only the local shards initialised: gathered, the weights equal
    the single-process model's exactly (tests/init_ranks.py). cp: built (FSDP2 over the flattened dp x cp
    mesh, the position buffer) though its ring attention needs CUDA."""
    job = make_test_job(strategy, ws, model_cfg=dict(GPT))
    spec, out = tmp_path / "job.json", tmp_path / "out.txt"
    spec.write_text(json.dumps(job.to_dict()))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={ws}",
        str(ROOT / "tests" / "init_ranks.py"),
        str(spec),
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_text() == "ok"


DDP_BUCKETS = """
import sys, torch, torch.distributed as dist
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
from benchbench.strategies.parallelize import parallelize
from tests.helpers.jobs import make_test_job
job = make_test_job(sys.argv[2], 1)
(ddp,) = parallelize(job, torch.device("cpu"), lambda out, y: out.sum()).modules
print(sum(b.buffer().numel() * b.buffer().element_size() for b in ddp.reducer._get_zeros_like_grad_buckets()))
dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "zero1"])
def test_ddp_bucket_estimate_is_what_ddp_allocates(tmp_path, strategy):
    """DDP (and ZeRO-1) keeps fp32 gradient buckets as large as every gradient beside ``.grad``:
    the feasibility check counts them (an 8B gpt under ddp-ac fitted 141 GB without them)."""
    out = subprocess.run(
        [sys.executable, "-c", DDP_BUCKETS, str(tmp_path / "pg"), strategy],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    job = make_test_job(strategy, 1)
    assert int(out.stdout.split()[-1]) == estimates.ddp_bucket_estimate(job) == 4 * model_info(job.model_cfg).params
    mem = estimates.memory_estimate(job)
    peak = mem.activation_bytes + mem.transient_bytes  # + the loss's gradients (test below)
    assert mem.total_bytes == mem.model_state_bytes + peak + estimates.ddp_bucket_estimate(job)
    assert "DDP gradient buckets" in mem.note
    assert estimates.ddp_bucket_estimate(make_test_job("fsdp", 2)) == 0


@pytest.mark.slow
def test_pipelines_hold_what_their_schedule_keeps_in_flight(tmp_path):
    """Saved over the step, every pipeline schedule saves the same (all m = 4 micro-batches of
    its stage); held at once, GPipe all of them, 1F1B min(m, p − rank) = 2 on the first rank,
    interleaved 1F1B its warm-up + 1 — each peak exactly as estimated; a single process holds
    what it saves."""
    got = {s: summary(tmp_path, s, ws, GPT) for s, ws in (("single", 1), ("pp-gpipe", 2), ("pp-1f1b", 2))}
    got["pp-interleaved"] = summary(tmp_path, "pp-interleaved", 2, GPT)
    for name, s in got.items():
        assert s["activation_peak_bytes"] == s["activation_peak_bytes_est"], name
        assert s["activation_bytes"] == s["activation_bytes_est"], name
    assert got["single"]["activation_peak_bytes"] == got["single"]["activation_bytes"]
    assert got["pp-gpipe"]["activation_peak_bytes"] == got["pp-gpipe"]["activation_bytes"]
    assert got["pp-1f1b"]["activation_bytes"] == got["pp-gpipe"]["activation_bytes"]
    assert got["pp-1f1b"]["activation_peak_bytes"] < got["pp-interleaved"]["activation_peak_bytes"]
    assert got["pp-interleaved"]["activation_peak_bytes"] < got["pp-gpipe"]["activation_peak_bytes"]


#: (model, strategy, world size, plan changes): bf16 under every way a plan stores the residual
#: stream (fp32 beside autocast; bf16 under FSDP2's MixedPrecisionPolicy), TP, SP, full AC with
#: SP, and pipelines; fp32 SP.
DTYPE_CASES = [
    (GPT, "bf16", "fsdp", 2, {}),
    (GPT, "bf16", "tp", 2, {}),
    (GPT, "bf16", "tp-sp", 2, {"activation_checkpoint": "full"}),
    (GPT, "fp32", "tp-sp", 2, {}),
    (GPT, "bf16", "pp-1f1b", 2, {}),
    (LLAMA, "bf16", "fsdp", 2, {}),
    (LLAMA, "bf16", "tp-sp", 2, {}),
    (LLAMA, "bf16", "pp-interleaved", 2, {}),
]


@pytest.mark.slow
@pytest.mark.parametrize(("cfg", "dtype", "strategy", "ws", "changes"), DTYPE_CASES)
def test_bf16_and_sequence_parallel_activations_are_exact(tmp_path, cfg, dtype, strategy, ws, changes):
    """Saved over the step and held at once, on real ranks: the estimates in the job's dtype,
    split by tp and (under SP) the norm region by tp, equal the measured bytes
    (benchmarks/activation_memory.py runs every plan)."""
    job = make_test_job(strategy, ws, model_cfg=dict(cfg), warmup_steps=1, steps=1, dtype=dtype)
    job = job.replace(seq_len=cfg["seq_len"], plan=replace(job.plan, **changes))
    rec, _ = run_job(job, tmp_path / f"{job.id}.json", None)
    assert rec["status"] == "ok", rec["error"]
    s = rec["summary"]
    assert (s["activation_bytes"], s["activation_peak_bytes"]) == (
        s["activation_bytes_est"],
        s["activation_peak_bytes_est"],
    )
