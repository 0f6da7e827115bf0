"""Parameter counts and analytic training FLOPs, against hand-computed cases and real modules."""

import pytest

from benchbench.models.build import build_model
from benchbench.models.registry import model_info
from benchbench.models.weights import materialize


def test_gpt_flops_hand_computed():
    # L=2, h=8, T=4, V=10:
    #   per layer 24*T*h^2 = 24*4*64 = 6144, causal attention 2*T^2*h = 2*16*8 = 256 -> 6400
    #   two layers 12800, LM head 2*T*h*V = 2*4*8*10 = 640 -> forward 13440, training x3 = 40320
    info = model_info({"arch": "gpt", "layers": 2, "hidden": 8, "heads": 2, "seq_len": 4, "vocab": 10})
    assert info.train_flops_per_sample == 40320
    assert info.tokens_per_sample == 4


def test_mlp_flops_hand_computed():
    # width 4, depth 2, out 3: forward MACs 2*16 + 4*3 = 44 -> FLOPs 88 -> training 264
    info = model_info({"arch": "mlp", "width": 4, "depth": 2, "out_dim": 3})
    assert info.train_flops_per_sample == 264
    assert info.tokens_per_sample == 0


@pytest.mark.parametrize(
    "cfg",
    [
        {"arch": "gpt", "layers": 3, "hidden": 24, "heads": 4, "seq_len": 7, "vocab": 11},
        {"arch": "mlp", "width": 1024, "depth": 8, "out_dim": 16},
    ],
)
def test_param_formula_matches_module(cfg):
    model = build_model(cfg)
    assert model_info(cfg).params == sum(p.numel() for p in model.parameters())


def test_default_mlp_is_8_4m_params():
    assert round(model_info({"arch": "mlp", "width": 1024, "depth": 8, "out_dim": 16}).params / 1e6, 1) == 8.4


def test_gpt_rejects_heads_not_dividing_hidden():
    with pytest.raises(ValueError, match="divisible by heads"):
        build_model({"arch": "gpt", "layers": 1, "hidden": 10, "heads": 3, "seq_len": 4, "vocab": 8})


def measured_training_flops(cfg: dict, batch: int) -> int:
    """FLOPs torch's FlopCounterMode counts for one forward + backward of ``batch`` samples."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = materialize(build_model(cfg), torch.device("cpu"), 0)
    gpt = cfg["arch"] == "gpt"
    x = torch.randint(cfg["vocab"], (batch, cfg["seq_len"])) if gpt else torch.randn(batch, cfg["width"])
    with FlopCounterMode(display=False) as counter:
        model(x).float().sum().backward()
    return counter.get_total_flops()


def test_gpt_flops_agree_with_torch_flop_counter():
    """Every matmul of the analytic count is one torch counts, exactly. The analytic figure adds the
    attention scores and weighted sum (causal convention: half of 4·T²·h per layer, x3 for
    training), which FlopCounterMode does not see inside CPU scaled_dot_product_attention."""
    cfg = {"arch": "gpt", "layers": 2, "hidden": 64, "heads": 4, "seq_len": 32, "vocab": 128}
    batch, t, h = 4, 32, 64
    attention = 3 * cfg["layers"] * 2 * t * t * h * batch
    assert measured_training_flops(cfg, batch) == model_info(cfg).train_flops_per_sample * batch - attention


def test_mlp_flops_agree_with_torch_flop_counter():
    """Exact, but for the first layer's input gradient (2·w² per sample): the data needs none, so
    torch skips it, while the analytic 3 x forward counts it."""
    cfg = {"arch": "mlp", "width": 64, "depth": 3, "out_dim": 8}
    batch = 4
    skipped = 2 * cfg["width"] ** 2 * batch
    assert measured_training_flops(cfg, batch) == model_info(cfg).train_flops_per_sample * batch - skipped


def test_registry_and_cost_model_tensors_import_no_torch():
    """The workflow side reads the registry, a Llama's figures and the built-in models' per-rank
    tensors without torch: the builders alone import it, when a model is built."""
    import subprocess
    import sys

    code = (
        "import sys; import benchbench.models.registry as r; from benchbench.models.presets import PRESETS; "
        "from benchbench.costmodel.tensors import stage_tensors; "
        "llama, vit = {'arch': 'llama', **PRESETS['llama']['8b']}, {'arch': 'vit', **PRESETS['vit']['b16']}; "
        "r.model_info(llama); stage_tensors(llama, 1, 4, 8); stage_tensors(vit, 0, 2, 4); "
        "print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"
