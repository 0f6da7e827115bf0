"""The architectures llama and vit (benchbench.models.llama, benchbench.models.vit): exact parameter
counts at the published shapes, FLOPs against hand counts and FlopCounterMode, presets and their
config errors, the analytic per-rank tensors against the meta-built model's, and the correctness
gate at 2 ranks over a representative few plans per architecture."""

import pytest
import torch

from benchbench.models.build import build_model
from benchbench.models.presets import PRESETS
from benchbench.models.registry import model_info
from benchbench.models.weights import materialize
from benchbench.spec.config import ConfigError, check_config
from tests.helpers.jobs import make_test_job, run


def preset(arch: str, name: str, **extra) -> dict:
    return {"arch": arch, **PRESETS[arch][name], **extra}


@pytest.mark.parametrize(
    ("name", "params"),
    [("8b", 8_030_261_248), ("70b", 70_553_706_496), ("1b", 1_498_482_688), ("150m", 149_840_640)],
)
def test_llama_presets_have_the_published_parameter_counts(name, params):
    """8B and 70B as Meta publishes them (8.03B, 70.6B); 1b = Llama 3.2 1B's 1,235,814,400 with
    its tied head untied (+ 128256·2048 = 262,668,288). Counted on the meta device (no memory)."""
    cfg = preset("llama", name)
    assert model_info(cfg).params == params
    assert sum(p.numel() for p in build_model(cfg).parameters()) == params
    if name == "1b":
        assert params - 128256 * 2048 == 1_235_814_400


def test_llama_flops_hand_computed():
    """8B at T = 8192 by hand: per layer 2T(2d² + 2d·1024 + 3d·14336) + 2T²d, head 2TdV, x3."""
    t, d, f, v = 8192, 4096, 14336, 128256
    per_layer = 2 * t * (2 * d * d + 2 * d * 1024 + 3 * d * f) + 2 * t * t * d
    assert model_info(preset("llama", "8b")).train_flops_per_sample == 3 * (32 * per_layer + 2 * t * d * v)


def counted_training_flops(cfg: dict, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    model = materialize(build_model(cfg), torch.device("cpu"), 0)
    with FlopCounterMode(display=False) as counter:
        model(x).float().sum().backward()
    return counter.get_total_flops()


def test_llama_flops_agree_with_torch_flop_counter():
    """Every projection and the head exactly; the analytic figure adds the attention matmuls (causal
    half: 3·layers·2T²d per sequence), which FlopCounterMode does not see inside CPU SDPA."""
    cfg, batch = preset("llama", "tiny"), 4
    t, d = cfg["seq_len"], cfg["hidden"]
    attention = 3 * cfg["layers"] * 2 * t * t * d * batch
    x = torch.randint(cfg["vocab"], (batch, t))
    assert counted_training_flops(cfg, x) == model_info(cfg).train_flops_per_sample * batch - attention


def test_vit_b16_has_the_published_parameter_count_and_flops():
    """ViT-B/16 (224 px, 1000 classes): 86,567,656 parameters (timm's vit_base_patch16_224) and a
    forward of 35.1 GFLOPs (17.6 G multiply-accumulates, as usually quoted)."""
    info = model_info(preset("vit", "b16"))
    assert info.params == 86_567_656 == sum(p.numel() for p in build_model(preset("vit", "b16")).parameters())
    n, t, h, m = 196, 197, 768, 3072
    forward = 2 * n * 768 * h + 12 * (2 * t * (4 * h * h + 2 * h * m) + 4 * t * t * h) + 2 * h * 1000
    assert info.train_flops_per_sample == 3 * forward and round(forward / 1e9, 1) == 35.1


def test_vit_flops_agree_with_torch_flop_counter():
    """Exact, but for the attention matmuls (bidirectional: 4T²h per block, x3), which CPU SDPA
    hides, and the patch projection's input gradient (2·N·C·p²·h), which torch skips (the image
    needs none)."""
    cfg, batch = preset("vit", "tiny"), 4
    n, c, p, h = 16, 3, 4, 32
    t = 1 + n
    attention = 3 * cfg["layers"] * 4 * t * t * h * batch
    skipped = 2 * n * c * p * p * h * batch
    x = torch.randn(batch, c, 16, 16)
    assert counted_training_flops(cfg, x) == model_info(cfg).train_flops_per_sample * batch - attention - skipped


def test_vit_task_is_seeded_and_learnable():
    from benchbench.models.registry import make_task

    cfg = preset("vit", "tiny")
    task = make_task(cfg, 0)
    x, y = task.batch(3, 8)
    assert x.shape == (8, 3, 16, 16) and torch.equal(x, make_task(cfg, 0).batch(3, 8)[0])
    assert not torch.equal(x, task.batch(4, 8)[0])
    model = materialize(build_model(cfg), torch.device("cpu"), 0)
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    losses = []
    for step in range(30):
        x, y = task.batch(step, 32)
        loss = task.loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_preset_config_errors_name_the_key():
    study = {"study": "t", "strategies": ["single"], "world_sizes": [1]}
    cfg = check_config({**study, "models": {"l": {"arch": "llama", "preset": "8b", "seq_len": 64}}})
    assert cfg["models"]["l"]["hidden"] == 4096 and cfg["models"]["l"]["seq_len"] == 64
    assert check_config(cfg) == cfg  # the workflow re-checks the completed study (report --study-json)
    with pytest.raises(ConfigError, match=r"models\.l\.preset: '7b' is not allowed .*'70b'"):
        check_config({**study, "models": {"l": {"arch": "llama", "preset": "7b"}}})
    tiny = dict(PRESETS["llama"]["tiny"])
    with pytest.raises(ConfigError, match=r"models\.l\.kv_heads: heads = 4 must be a multiple of kv_heads = 3"):
        check_config({**study, "models": {"l": {"arch": "llama", **tiny, "kv_heads": 3}}})
    with pytest.raises(ConfigError, match=r"models\.v\.patch: 5 does not divide image_size = 16"):
        check_config({**study, "models": {"v": {"arch": "vit", **PRESETS["vit"]["tiny"], "patch": 5}}})
    with pytest.raises(ConfigError, match=r"models\.l\.hidden: set next to preset '8b'"):
        check_config({**study, "models": {"l": {"arch": "llama", "preset": "8b", "hidden": 128}}})
    no_rope = {k: v for k, v in tiny.items() if k != "rope_theta"}  # neither a preset nor every size key
    with pytest.raises(ConfigError, match=r"models\.l: missing \['rope_theta'\]; allowed: \['preset'\] or "):
        check_config({**study, "models": {"l": {"arch": "llama", **no_rope}}})
    with pytest.raises(ConfigError, match=r"models\.v: missing \['channels', 'classes'\]; allowed: \['preset'\] or "):
        check_config(
            {
                **study,
                "models": {
                    "v": {
                        "arch": "vit",
                        "image_size": 16,
                        "patch": 4,
                        "layers": 1,
                        "hidden": 32,
                        "heads": 4,
                        "mlp_hidden": 64,
                    }
                },
            }
        )


#: A representative few per architecture at 2 ranks (CI time is scarce; DDP wraps any module the
#: same way and is left out): FSDP over the model's blocks, its TP plan (Llama's with sequence
#: parallelism: the norms and embedding output sharded too), its pipeline split. Every plan of
#: the strategies study passes for both (README "Models").
GATE_CASES = [
    ("llama", "fsdp"),
    ("llama", "tp-sp"),
    ("llama", "pp-1f1b"),
    ("vit", "fsdp"),
    ("vit", "tp"),
    ("vit", "pp-1f1b"),
]


@pytest.fixture(scope="module")
def gate_cfg():
    return check_config(
        {
            "study": "t",
            "strategies": ["single"],
            "world_sizes": [1],
            "steps": 2,
            "warmup_steps": 1,
            "timeout_s": 300,
            "models": {
                "llama": {"arch": "llama", "preset": "tiny", "batch_size": 8},
                "vit": {"arch": "vit", "preset": "tiny", "batch_size": 8},
            },
        }
    )


@pytest.mark.slow
@pytest.mark.parametrize(("model", "strategy"), GATE_CASES)
def test_arch_passes_the_gate(gate_cfg, tmp_path, model, strategy):
    rec = run(gate_cfg, tmp_path, model, strategy, 2)
    assert rec["status"] == "ok", rec["error"]
    s = rec["summary"]
    assert s["verify_verdict"] == "match", s["verify_detail"]


def saved_activation_bytes(cfg: dict, batch: int, ac: str = "none") -> int:
    """Bytes autograd saves in one forward + loss of ``cfg`` (unique storages, parameters not
    counted), its blocks checkpointed as activation checkpointing mode ``ac`` does."""
    from benchbench.models.registry import make_task
    from benchbench.strategies.checkpointing import apply_ac

    model = apply_ac(materialize(build_model(cfg), torch.device("cpu"), 0), ac, 2)
    task = make_task(cfg, 0)
    x, y = task.batch(0, batch)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        task.loss_fn(model(x), y)
    return sum(n for ptr, n in seen.items() if ptr not in params)


@pytest.mark.parametrize("arch", ["llama", "vit"])
@pytest.mark.parametrize("layers", [1, 2])
def test_activation_estimate_is_what_autograd_saves(arch, layers):
    """The architecture's activation estimate (the study's memory feasibility) equals, byte for
    byte, what autograd saves on the tiny preset; a wrong per-block term would show at 2 layers."""
    from benchbench.models.registry import ARCHITECTURES

    cfg, batch = preset(arch, "tiny", layers=layers), 4
    estimate = ARCHITECTURES[arch].activations(cfg, [0], 1, batch, 1, 1)
    assert estimate == saved_activation_bytes(cfg, batch)
    # selective checkpointing (every 2nd block: index 1) keeps only that block's input
    kept = frozenset({1} if layers > 1 else set())
    selective = ARCHITECTURES[arch].activations(cfg, [0], 1, batch, 1, 1, kept)
    assert selective == saved_activation_bytes(cfg, batch, "selective")


@pytest.mark.parametrize("arch", ["llama", "vit"])
def test_meta_accounting_matches_the_built_stages(arch):
    """What a pipeline stage's tensor-parallel rank holds, read off the meta model, is what
    build_stage_module keeps (names, and shapes at tp = 1), and tp = 2 halves exactly the tensors
    the model's TP plan splits."""
    from benchbench.costmodel.tensors import stage_tensors
    from benchbench.strategies.pipeline_parallel import build_stage_module

    cfg = preset(arch, "tiny")
    for stage in (0, 1):
        built = {n: tuple(p.shape) for n, p in build_stage_module(cfg, stage, 2).named_parameters()}
        assert {t.name: t.shape for t in stage_tensors(cfg, stage, 2, 1)} == built
    whole = {t.name: t for t in stage_tensors(cfg, 0, 1, 1)}
    split = {t.name: t for t in stage_tensors(cfg, 0, 1, 2)}
    halved = {n for n in whole if split[n].numel * 2 == whole[n].numel}
    assert "blocks.0.attn.q.weight" in halved and "head.weight" in halved
    assert not any(n.endswith(("norm.weight", "ln1.weight")) for n in halved)
    assert sum(t.numel for t in whole.values()) == model_info(cfg).params
    # by hand, at tp = 2: what the TP plan splits (column-wise weights and biases, row-wise weights) / 2
    if arch == "llama":
        d, f, v, n = cfg["hidden"], cfg["ffn_hidden"], cfg["vocab"], cfg["layers"]
        kv = cfg["kv_heads"] * d // cfg["heads"]
        by_hand = n * ((2 * d * d + 2 * d * kv + 3 * d * f) // 2 + 2 * d) + v * d + v * d // 2 + d
    else:
        h, m, c, n, t = cfg["hidden"], cfg["mlp_hidden"], cfg["classes"], cfg["layers"], 1 + (16 // 4) ** 2
        embed = 3 * 4 * 4 * h + h + h + t * h
        by_hand = embed + n * ((4 * h * h + 3 * h + 2 * h * m + m) // 2 + 2 * h + 4 * h) + 2 * h + (h * c + c) // 2
    assert sum(t.numel for t in split.values()) == by_hand


#: (preset, [(stage, n_stages, tp)]): uneven pipeline splits (a stage with fewer blocks, one with
#: none: 4 layers over 5 stages), tensor-parallel degrees dividing every split size.
ANALYTIC_CASES = [
    ("llama", "tiny", [(0, 1, 1), (0, 1, 2), (0, 3, 2), (1, 3, 1), (2, 3, 2), (0, 5, 1), (3, 5, 2)]),
    ("llama", "1b", [(0, 1, 1), (0, 2, 8), (1, 2, 4), (3, 4, 2)]),
    ("llama", "8b", [(0, 1, 8), (0, 4, 8), (2, 4, 1), (3, 4, 4)]),
    ("vit", "tiny", [(0, 1, 1), (0, 1, 2), (0, 3, 4), (1, 3, 2), (2, 3, 1), (4, 5, 2)]),
    ("vit", "b16", [(0, 1, 1), (0, 2, 4), (1, 2, 2), (2, 3, 4)]),
]


@pytest.mark.parametrize(("arch", "name", "cases"), ANALYTIC_CASES, ids=[f"{a}-{n}" for a, n, _ in ANALYTIC_CASES])
def test_analytic_tensors_are_the_meta_models(arch, name, cases):
    """The analytic per-rank tensors (benchbench.models.tensors, no torch: what the cost model and
    the memory estimate use) equal, name for name, shape for shape, in order and FSDP unit, what
    meta_tensors reads off the meta-built model and its TP plan."""
    from benchbench.models.accounting import meta_tensors
    from benchbench.models.registry import ARCHITECTURES

    cfg = preset(arch, name)
    analytic = ARCHITECTURES[arch].tensors
    for stage, n_stages, tp in cases:
        assert analytic(cfg, stage, n_stages, tp) == meta_tensors(cfg, stage, n_stages, tp), (stage, n_stages, tp)


def test_llama3_study_lists_feasible_plans_and_drops_the_rest_by_memory(monkeypatch):
    """`benchbench matrix` on Llama 3 8B / 70B on h100-sxm at 8-512 GPUs: built on the meta device
    only; what does not fit 80 GB is dropped with the cost model's memory reason."""
    from benchbench.spec.config import ROOT, load_config
    from benchbench.study import expand

    cfg = load_config(ROOT / "config/studies/llama3-h100.yaml")
    jobs, dropped = expand(cfg)
    runs = {(j.model, j.strategy) for j in jobs}
    assert ("llama3-8b", "fsdp-tp8") in runs and ("llama3-70b", "fsdp-tp8-pp4") in runs
    memory = {(d.model, d.strategy) for d in dropped if d.reason.startswith("memory:")}
    assert {("llama3-8b", "ddp"), ("llama3-8b", "fsdp"), ("llama3-70b", "fsdp"), ("llama3-70b", "fsdp-tp8")} <= memory
    ran = {(j.model, j.strategy, j.world_size) for j in jobs}
    assert not ran & {(d.model, d.strategy, d.world_size) for d in dropped}
    fsdp_70b = next(d for d in dropped if (d.model, d.strategy, d.world_size) == ("llama3-70b", "fsdp", 512))
    assert "> memory_gb = 80" in fsdp_70b.reason
    # activation checkpointing (kept: each block's input only) lets FSDP fit the 70B, from 32 GPUs
    fsdp_ac = sorted(j.world_size for j in jobs if (j.model, j.strategy) == ("llama3-70b", "fsdp-ac"))
    assert fsdp_ac == [32, 64, 128, 256, 512]
    # the check is what drops them: with the memory of 64 GPUs per rank every plan's memory fits
    from benchbench.spec import job as job_spec

    real = job_spec.load_hardware

    def roomy(name, *a):
        hw = real(name, *a)
        return hw.__class__(**{**hw.__dict__, "memory_gb": 80 * 64})

    monkeypatch.setattr(job_spec, "load_hardware", roomy)  # make_job's hardware
    assert not [d for d in expand(cfg)[1] if d.reason.startswith("memory:")]


EXAMPLE = "examples/custom_model/study.yaml"
BARE_MODEL = """
import torch
from torch import nn

def spec():
    return {"build": lambda: nn.Linear(4, 2), "loss": torch.nn.functional.mse_loss, "flops_per_sample": 48,
            "batch": lambda step, n, seed: (torch.randn(n, 4), torch.randn(n, 2))}
"""


def custom_study(tmp_path, entry: str, **extra) -> dict:
    (tmp_path / "bare.py").write_text(BARE_MODEL)
    study = {
        "study": "c",
        "models": {"m": {"arch": "custom", "entry": entry, "path": "."}},
        "strategies": ["ddp", "tp", "pp-1f1b"],
        "world_sizes": [2],
        **extra,
    }
    return check_config(study, "study", tmp_path)


def test_custom_entry_point_without_tp_plan_or_pipeline_drops_those_plans(tmp_path):
    from benchbench.study import expand

    jobs, dropped = expand(custom_study(tmp_path, "bare:spec"))
    assert [j.strategy for j in jobs] == ["ddp"]
    reasons = {d.strategy: d.reason for d in dropped}
    assert reasons == {
        "tp": "tensor parallel: the 'custom' architecture declares no tensor-parallel plan",
        "pp-1f1b": "pipeline parallel: the 'custom' architecture declares no pipeline split",
    }
    assert model_info(jobs[0].model_cfg).params == 4 * 2 + 2


def test_custom_entry_point_is_loaded_from_its_path_only(tmp_path):
    """``json:spec`` with no json.py under path is refused, though the standard library's json is
    importable: nothing is imported from sys.path; a missing function is named."""
    with pytest.raises(ConfigError, match=r"models\.m\.entry: custom model entry 'json:spec': no file .*json\.py"):
        custom_study(tmp_path, "json:spec")
    with pytest.raises(ConfigError, match=r"models\.m\.entry: .*defines no function 'nope'"):
        custom_study(tmp_path, "bare:nope")
    with pytest.raises(ConfigError, match=r"models\.m\.path: .* is not a folder"):
        check_config(
            {
                "study": "c",
                "models": {"m": {"arch": "custom", "entry": "a:b", "path": "missing"}},
                "strategies": ["ddp"],
                "world_sizes": [2],
            },
            "study",
            tmp_path,
        )


@pytest.mark.slow
def test_custom_example_runs_through_the_workflow(tmp_path):
    """examples/custom_model through Snakemake (CI profile) to the runs table: ddp at 2 ranks, ok
    and matching the single-process reference at the gate."""
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    from benchbench.spec.config import ROOT

    snakemake = Path(sys.executable).with_name("snakemake")
    command = [
        str(snakemake),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(ROOT / EXAMPLE),
        "--profile",
        str(ROOT / "profiles/ci"),
        "results/custom-example/tables/runs.csv",
    ]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "results/custom-example/tables/runs.csv")
    assert runs["status"].tolist() == ["ok"] and runs["correct"].tolist() == ["match"]


def test_readme_preset_table_gives_the_exact_counts():
    import re

    from benchbench.spec.config import ROOT

    rows = re.findall(r"^\| (llama|vit) `(\w+)` \|.*\| ([\d,]+) \|$", (ROOT / "README.md").read_text(), re.M)
    assert {(a, p) for a, p, _ in rows} == {(a, p) for a in PRESETS for p in PRESETS[a]}
    for arch, name, count in rows:
        assert model_info(preset(arch, name)).params == int(count.replace(",", "")), (arch, name)


def test_llama_task_at_llama3_vocabulary_is_sparse_seeded_and_small():
    """At 128256 tokens the chain is a (V, 8) successor table (8 MB), not V² floats (66 GB):
    seeded batches, every target one of its input token's successors."""
    from benchbench.models.llama import SparseMarkovTokens
    from benchbench.models.registry import make_task

    task = make_task(preset("llama", "8b", seq_len=32), 0)
    assert isinstance(task, SparseMarkovTokens) and task.successors.numel() == 128256 * 8
    x, y = task.batch(5, 4)
    assert torch.equal(x, make_task(preset("llama", "8b", seq_len=32), 0).batch(5, 4)[0])
    assert (task.successors[x] == y.unsqueeze(-1)).any(-1).all()
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_cost_model_shapes_of_the_new_architectures():
    """The calibration's main GEMM and the activation-sized messages (tensor / pipeline parallel)
    of a Llama (w1: tokens x ffn_hidden x hidden) and a ViT (fc1 over 1 + patches tokens)."""
    from benchbench.models.formulas import boundary
    from benchbench.rank.calibrate import gemm_shape

    llama, vit = preset("llama", "tiny"), preset("vit", "tiny")
    assert gemm_shape(llama, 2) == (32, 64, 32) and boundary(llama) == (16, 32, 16 * 64)
    assert gemm_shape(vit, 2) == (34, 64, 32) and boundary(vit) == (17, 32, 8)


@pytest.mark.parametrize("arch", ["llama", "vit"])
def test_checkpoint_recompute_share_is_what_backward_recomputes(arch):
    """FlopCounterMode sees checkpointing's recompute in backward: full checkpointing adds, per
    block, its forward but the last matmul — the cost model's recompute share (attention, which
    CPU SDPA hides from the counter, left out of both)."""
    from benchbench.costmodel.compute import block_flops, recompute_share
    from benchbench.models.registry import make_task
    from benchbench.strategies.checkpointing import apply_ac

    cfg, batch = preset(arch, "tiny"), 4
    x, _ = make_task(cfg, 0).batch(0, batch)
    from torch.utils.flop_counter import FlopCounterMode

    def counted(ac: str) -> int:
        model = apply_ac(materialize(build_model(cfg), torch.device("cpu"), 0), ac, 1)
        with FlopCounterMode(display=False) as counter:
            model(x).float().sum().backward()
        return counter.get_total_flops()

    first, block, head, _ = block_flops(cfg)
    tokens = cfg.get("seq_len") or 17
    attention = 2 * tokens * tokens * cfg["hidden"] * (1 if arch == "llama" else 2)
    job = make_test_job("ddp-ac", 2, model_cfg=cfg)
    share = recompute_share(job, [0], 1)
    expected = share * (first + cfg["layers"] * block + head) - cfg["layers"] * attention
    assert counted("full") - counted("none") == pytest.approx(expected * batch, rel=1e-12)
