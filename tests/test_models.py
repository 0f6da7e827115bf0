"""Parameter counts and analytic training FLOPs, against hand-computed cases and real modules."""

import pytest

from benchbench.models import build_model, model_info


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
