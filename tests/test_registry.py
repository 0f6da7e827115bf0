"""Every number is declared once (benchbench/spec/metrics.py, benchbench/protocol/provenance.py); each place that
lists numbers — the summary, the record schema, the tables, the report, docs/METRICS.md — must
agree with the registry. Likewise the tables of schedules, data-parallel flavours, architectures
and plots agree with the schemas and with what they derive from."""

import re

import pytest

from benchbench.protocol.provenance import FIELDS
from benchbench.protocol.record import make_record
from benchbench.results.report import PROVENANCE_SHOWN, SIDE_BY_SIDE_METRICS
from benchbench.results.tables import RUN_COLUMNS, runs_table, scaling_table, with_correctness
from benchbench.spec.metrics import COMPARISON, DERIVED, METRICS, SERIES, SUMMARY, SUMMARY_NAMES, VALIDATION, summarize
from benchbench.spec.schema import ROOT, load_schema
from tests.helpers.jobs import TINY_GPT, TINY_MLP, make_test_job

METRICS_MD = ROOT / "docs" / "METRICS.md"
GATE = [n for n in SUMMARY_NAMES if n.startswith("verify_")]
COMPUTED = {
    "step_time_median_s",
    "step_time_p10_s",
    "step_time_p90_s",
    "step_time_cv",
    "samples_per_s",
    "tokens_per_s",
    "model_tflops_per_rank",
    "mfu",
    "params",
    "train_flops_per_sample",
    "mfu_peak_flops",
    "hardware_tflops_per_rank",
    "hfu",
}
MEASURED = [n for n in SUMMARY_NAMES if n not in COMPUTED]


def documented_names() -> set[str]:
    """The backticked names in the first cell of every table row of docs/METRICS.md."""
    names: set[str] = set()
    for line in METRICS_MD.read_text().splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            names |= set(re.findall(r"`([a-z0-9_]+)`", line.split("|")[1]))
    return names


MEMORY = (
    "param_bytes",
    "grad_bytes",
    "optim_state_bytes",
    "model_state_bytes",
    "model_state_bytes_est",
    "activation_bytes",
    "activation_bytes_est",
)


def fake_summary() -> dict:
    return summarize(
        step_times=[0.1, 0.12, 0.11],
        global_batch=8,
        world_size=2,
        tokens_per_sample=16,
        train_flops_per_sample=1e9,
        params=1000,
        peak_flops=1e12,
        measured={
            **dict.fromkeys(MEASURED, None),
            "peak_mem_mb": 300.0,
            "peak_mem_source": "rss",
            "comm_bytes_per_step": 4000.0,
            "comm_bytes_source": "measured",
            "exposed_comm_fraction": 0.2,
            "mfu_precision": "fp32",
            "hardware_flops_per_step": 9e9,
            "verify_verdict": "match",
            **dict.fromkeys(MEMORY, 1000.0),
        },
    )


def test_summarize_fills_exactly_the_registry():
    assert list(fake_summary()) == list(SUMMARY_NAMES)


def test_summary_derives_hardware_flops_and_mfu_from_the_peak():
    s = fake_summary()
    assert s["mfu"] == pytest.approx(1e9 * 8 / 0.11 / (2 * 1e12))  # model FLOP/s / (ranks x peak)
    assert s["hfu"] == pytest.approx(9e9 / 0.11 / (2 * 1e12)) and s["mfu_peak_flops"] == 1e12
    assert s["hardware_tflops_per_rank"] == pytest.approx(9e9 / 0.11 / 2 / 1e12)


@pytest.mark.parametrize(("flops_per_sample", "hardware"), [(1e11, None), (1e9, 1e12)])
def test_mfu_or_hfu_above_one_is_an_error(flops_per_sample, hardware):
    with pytest.raises(ValueError, match=r"(mfu|hfu) = .* > 1: the hardware profile's fp32 peak"):
        summarize(
            step_times=[0.1],
            global_batch=8,
            world_size=2,
            tokens_per_sample=16,
            train_flops_per_sample=flops_per_sample,
            params=1000,
            peak_flops=1e12,
            measured={**dict.fromkeys(MEASURED, None), "mfu_precision": "fp32", "hardware_flops_per_step": hardware},
        )


def test_summarize_refuses_a_number_the_registry_lacks():
    with pytest.raises(ValueError, match="summary keys differ from the registry: \\['not_registered'\\]"):
        summarize(
            step_times=[0.1],
            global_batch=8,
            world_size=1,
            tokens_per_sample=0,
            train_flops_per_sample=1.0,
            params=1,
            peak_flops=None,
            measured={**dict.fromkeys(MEASURED, None), "not_registered": 1.0},
        )


def test_record_schema_summary_is_the_registry():
    summary = load_schema("record")["properties"]["summary"]
    assert summary["properties"] == {m.name: m.json_schema() for m in SUMMARY}
    assert summary["required"] == list(SUMMARY_NAMES) and summary["additionalProperties"] is False


def test_record_schema_env_is_the_provenance_registry():
    env = load_schema("record")["properties"]["env"]
    assert env["properties"] == {f.name: f.json_schema() for f in FIELDS}
    assert env["additionalProperties"] is False


def test_metrics_md_defines_every_registered_number_and_no_other():
    registered = set(METRICS)
    documented = documented_names()
    assert registered - documented == set(), "registered but not defined in docs/METRICS.md"
    assert documented - registered - {f.name for f in FIELDS} == set(), "in docs/METRICS.md but not registered"


def test_metrics_md_lists_the_provenance_fields():
    assert {f.name for f in FIELDS} <= documented_names()


def test_tables_carry_every_registered_number():
    records = [
        make_record(
            job=make_test_job("single", 1),
            status="ok",
            step_time_s=[0.1] * 3,
            loss=[2.0, 1.5, 1.0],
            summary=fake_summary(),
            applied=["AdamW"],
        ),
        make_record(
            job=make_test_job("ddp", 2),
            status="ok",
            step_time_s=[0.06] * 3,
            loss=[2.0, 1.5, 1.0],
            summary=fake_summary(),
            applied=["ddp(2, bucket=25MB)", "AdamW"],
        ),
    ]
    runs = runs_table(records)
    assert list(runs.columns) == RUN_COLUMNS and set(SUMMARY_NAMES) <= set(runs.columns)
    scaling = with_correctness(scaling_table(records), runs)
    expected = {m.column for m in SUMMARY if m.across_repeats != "none"} | {
        m.name for m in DERIVED if m.name not in ("loss_first", "loss_last")
    }
    assert expected <= set(scaling.columns)
    assert set(SIDE_BY_SIDE_METRICS) <= set(scaling.columns)
    assert list(scaling["applied"]) == ["ddp(2, bucket=25MB) → AdamW", "AdamW"]


def test_report_columns_and_provenance_are_registered():
    assert set(SIDE_BY_SIDE_METRICS) <= set(METRICS)
    assert set(PROVENANCE_SHOWN) <= {f.name for f in FIELDS}


def test_registry_declares_known_reductions():
    for m in (*SERIES, *SUMMARY, *DERIVED, *COMPARISON, *VALIDATION):
        assert m.across_ranks in {"max", "mean", "sum", "rank0", "none"}, m.name
        assert m.across_repeats in {"mean", "median", "max", "max_abs", "first", "none"}, m.name
        assert m.definition and m.unit is not None, m.name
    assert len(METRICS) == len(SERIES) + len(SUMMARY) + len(DERIVED) + len(COMPARISON) + len(VALIDATION)  # once


def test_schedule_table_agrees_with_torch_and_the_schema():
    from benchbench.spec.schedules import SCHEDULES
    from benchbench.strategies.pipeline_parallel import is_multi_stage

    for name, sched in SCHEDULES.items():
        assert sched.multi_stage == is_multi_stage(name), name  # derived from PipelineScheduleMulti
    props = load_schema("config")["properties"]["strategy_defs"]["additionalProperties"]["properties"]
    assert props["schedule"]["enum"] == list(SCHEDULES)


def test_data_parallel_table_agrees_with_plan_and_schema():
    from benchbench.spec.plan import COMPRESSIONS, DP_FLAVOURS
    from benchbench.strategies.parallelize import DATA_PARALLEL

    assert set(DATA_PARALLEL) == set(DP_FLAVOURS)
    props = load_schema("config")["properties"]["strategy_defs"]["additionalProperties"]["properties"]
    assert props["dp_flavour"]["enum"] == [f for f in DP_FLAVOURS if f != "none"]
    assert props["compression"]["enum"] == list(COMPRESSIONS)


def test_architecture_table_agrees_with_the_schema_and_gives_each_a_task():
    from benchbench.models.registry import ARCHITECTURES, make_task

    assert load_schema("config")["$defs"]["model"]["properties"]["arch"]["enum"] == list(ARCHITECTURES)
    for cfg in (TINY_GPT, TINY_MLP):
        x, y = make_task(cfg, 0).batch(0, 4)
        assert x.shape[0] == y.shape[0] == 4


def test_plot_table_agrees_with_the_layout():
    from benchbench.results.figures.study import _DRAW
    from benchbench.spec.paths import PLOTS

    assert set(_DRAW) == set(PLOTS)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("module.blocks.0.attn.q.weight", "blocks.0.attn.q.weight"),  # DDP
        ("blocks.0._orig_mod.attn.q.weight", "blocks.0.attn.q.weight"),  # torch.compile per block
        ("blocks.0._checkpoint_wrapped_module.mlp.fc1.bias", "blocks.0.mlp.fc1.bias"),
        ("submodule.weight", "submodule.weight"),  # only whole components are wrappers
    ],
)
def test_gate_matches_parameters_by_canonical_name(raw, canonical):
    from benchbench.rank.gate import canonical_name

    assert canonical_name(raw) == canonical
