"""Study expansion, dropped combinations and configuration errors."""

import subprocess
import sys

import pytest

from benchbench.spec.config import DEFAULT_CONFIG, ConfigError, check_config, load_config
from benchbench.spec.paths import StudyLayout
from benchbench.study import expand


def test_expansion_counts_and_drops(tiny_config):
    jobs, dropped = expand(tiny_config)
    # 2 models x (single@1 + dp-naive@1,2 + ddp@1,2) x 1 repeat
    assert len(jobs) == 10
    assert [(d.model, d.strategy, d.world_size) for d in dropped] == [
        ("gpt-tiny", "single", 2),
        ("mlp-tiny", "single", 2),
    ]
    assert all("world_size 1" in d.reason for d in dropped)
    assert len({j.id for j in jobs}) == len(jobs)
    assert len({StudyLayout("t").record(j) for j in jobs}) == len(jobs)


def test_repeats_and_strong_scaling_batch(tiny_config):
    cfg = dict(tiny_config, repeats=3)
    jobs, _ = expand(cfg)
    assert len(jobs) == 30
    assert {j.global_batch for j in jobs if j.model == "gpt-tiny"} == {8}


def test_weak_scaling_multiplies_batch_by_dp(tiny_config):
    jobs, _ = expand(dict(tiny_config, scaling="weak"))
    by = {(j.model, j.strategy, j.world_size): j.global_batch for j in jobs}
    assert by[("gpt-tiny", "ddp", 1)] == 8
    assert by[("gpt-tiny", "ddp", 2)] == 16


def test_batch_not_divisible_by_dp_is_dropped(tiny_config):
    cfg = dict(tiny_config, world_sizes=[1, 3])
    _, dropped = expand(cfg)
    reasons = {(d.model, d.strategy, d.world_size): d.reason for d in dropped}
    assert "not divisible by dp = 3" in reasons[("gpt-tiny", "ddp", 3)]


def test_default_config_is_valid_and_matches_the_issue():
    cfg = load_config(DEFAULT_CONFIG)
    jobs, _ = expand(cfg)
    assert {j.strategy for j in jobs} == {"single", "dp-naive", "ddp"}
    assert {j.world_size for j in jobs} == {1, 2}
    assert {cfg["models"][m]["arch"] for m in cfg["models"]} == {"mlp", "gpt"}
    assert cfg["repeats"] >= 2


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"dtype": "fp8"}, "dtype: 'fp8' is not allowed; allowed: ['fp32', 'bf16']"),
        ({"scaling": "medium"}, "scaling: 'medium' is not allowed; allowed: ['strong', 'weak']"),
        ({"strategies": ["ddp", "zero-9"]}, "strategies.1: 'zero-9' is not allowed; allowed: ["),
        ({"hardware": ["tpu-v9"]}, "hardware.0: 'tpu-v9' is not allowed; allowed: ['a100-80gb-sxm', 'cpu-local'"),
        ({"world_sizes": [0]}, "world_sizes.0: 0 is less than the minimum of 1"),
        ({"bogus": 1}, "<top level>: unknown key(s) ['bogus']; allowed: ["),
        ({"steps": "ten"}, "steps: 'ten' is not of type 'integer'"),
    ],
)
def test_config_errors_name_key_and_allowed(tiny_config, change, expected):
    with pytest.raises(ConfigError) as e:
        check_config({**tiny_config, **change})
    assert expected in str(e.value)


def test_model_errors_name_the_model_key(tiny_config):
    bad = {**tiny_config, "models": {"g": {"arch": "gpt", "layers": 1, "hidden": 8, "heads": 2, "seq_len": 4}}}
    with pytest.raises(ConfigError, match=r"models\.g: 'vocab' is a required property"):
        check_config(bad)
    bad = {**tiny_config, "models": {"m": {"arch": "mlp", "width": 8, "depth": 1, "out_dim": 2, "heads": 2}}}
    with pytest.raises(ConfigError, match=r"models\.m: 'heads' is not allowed; allowed: \[.*'width'"):
        check_config(bad)


def test_matrix_cli_prints_jobs_and_drops():
    out = subprocess.run(
        [sys.executable, "-m", "benchbench", "matrix", "--config", "config/studies/ci.yaml"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = out.stdout.splitlines()
    assert lines[0].startswith("# study ci: 10 jobs, 2 combinations dropped")
    assert sum(line.startswith("gpt-tiny__cpu-local__ddp__ws2__r0") for line in lines) == 1
    assert "dropped: gpt-tiny cpu-local single ws2: single-process plan needs world_size 1, got 2" in lines


def test_cli_config_error_exit_code(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: x\nmodels: {m: {arch: rnn}}\nstrategies: [ddp]\nworld_sizes: [1]\n")
    out = subprocess.run(
        [sys.executable, "-m", "benchbench", "matrix", "--config", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "models.m.arch: 'rnn' is not allowed; allowed: ['mlp', 'gpt', 'llama', 'vit', 'custom']" in out.stderr


@pytest.mark.parametrize("name", ["$(touch /tmp/pwned)", "a b", "../up", "x;rm", "q'uote", "<b>"])
def test_study_defined_strategy_names_are_restricted_to_a_safe_set(tiny_config, name):
    cfg = {**tiny_config, "strategies": ["single", name], "strategy_defs": {name: {"base": "ddp"}}}
    with pytest.raises(ConfigError, match=r"strategy_defs|strategies\.1") as e:
        check_config(cfg)
    assert "does not match" in str(e.value)


def test_a_study_that_runs_nothing_is_refused_with_every_reason(tiny_config):
    from benchbench.study import expand_runnable

    with pytest.raises(ConfigError) as e:
        expand_runnable({**tiny_config, "strategies": ["single"], "world_sizes": [2]}, "study config f.yaml")
    msg = str(e.value)
    assert msg.startswith("invalid study config f.yaml: no job to run")
    assert "gpt-tiny cpu-local single ws2: single-process plan needs world_size 1, got 2" in msg
    assert "mlp-tiny cpu-local single ws2" in msg
    jobs, dropped = expand_runnable(tiny_config)  # a study with some job: the same as expand
    assert (jobs, dropped) == expand(tiny_config)


def test_names_are_safe_path_components(tiny_config):
    """Names that match a loose pattern but are path components or options are refused."""
    for name in ("..", ".", ".hidden", "-rf", "ok\n"):
        with pytest.raises(ConfigError, match="is not a safe name"):
            check_config({**tiny_config, "study": name})


def test_cpu_profiles_drop_what_the_host_cannot_hold(tiny_config, monkeypatch):
    """On cpu-local a plan is checked against the host's RAM shared by its ranks: a 10¹⁸-parameter
    gpt is dropped with the cost model's memory reason naming the limit; the tiny models run; a
    host with less RAM than two ranks of a model need drops the 2-rank plan only."""
    from benchbench.costmodel import memory

    huge = {"arch": "gpt", "layers": 1000, "hidden": 9_200_000, "heads": 8, "seq_len": 16, "vocab": 64}
    cfg = check_config({**tiny_config, "models": {**tiny_config["models"], "huge": {**huge, "batch_size": 8}}})
    jobs, dropped = expand(cfg)
    reasons = {(d.model, d.strategy, d.world_size): d.reason for d in dropped}
    assert all(reasons[("huge", s, ws)].startswith("memory:") for s, ws in (("single", 1), ("ddp", 1), ("ddp", 2)))
    assert "GB per rank: this host's RAM" in reasons[("huge", "single", 1)]
    assert "over 2 rank(s)" in reasons[("huge", "ddp", 2)]
    assert {j.model for j in jobs} == {"gpt-tiny", "mlp-tiny"}
    # mlp-tiny under ddp: 16 bytes per parameter, + 4 in DDP's buckets, + its activations, per rank
    single = next(j for j in jobs if (j.model, j.strategy) == ("mlp-tiny", "single"))
    need = memory.memory_estimate(single).total_bytes
    monkeypatch.setattr(memory, "host_memory_bytes", lambda: 1.5 * need)
    small = {(j.model, j.strategy, j.world_size) for j in expand(tiny_config)[0]}
    assert ("mlp-tiny", "single", 1) in small and ("mlp-tiny", "dp-naive", 2) not in small
