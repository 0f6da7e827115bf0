"""The published record as data (config/published/*.yaml): it loads and validates, every row makes
its job, and a broken row is refused with an error naming the file and the key."""

import copy

import pytest
import yaml

from benchbench.spec.config import ConfigError
from benchbench.spec.hardware import load_hardware
from benchbench.spec.published import GIB, PUBLISHED_DIR, load_all, load_published, row_job

TORCHTITAN = PUBLISHED_DIR / "torchtitan-llama3-h100.yaml"
ZERO = PUBLISHED_DIR / "zero-figure1.yaml"


def test_published_runs_load_with_the_tables_figures():
    rows = {r.id: r for r in load_all()}
    # the rows the issue asks for at least, with their published figures as read
    assert rows["tt-8b-8gpu-fsdp"].published["tokens_per_s_per_gpu"] == 5762
    assert rows["tt-8b-8gpu-fsdp"].memory_bytes == pytest.approx(82.4 * GIB)
    assert rows["tt-8b-128gpu-fsdp"].published["tokens_per_s_per_gpu"] == 5605
    assert (rows["tt-70b-256gpu-2d"].world_size, rows["tt-70b-256gpu-2d"].local_batch) == (256, 16)
    assert rows["tt-405b-512gpu-3d-1f1b"].published_plan["pp"] == 8
    zero = [rows[f"zero-fig1-{k}"].published["memory"]["value"] for k in ("baseline", "pos", "pos-g", "pos-g-p")]
    assert zero == [120, 31.4, 16.6, 1.9]
    # h100-sxm-96gb's attainable.gemm is fitted on one named row (benchmarks/fit_attainable.py)
    assert [r.id for r in rows.values() if r.subset == "fitting"] == ["tt-8b-8gpu-fsdp"]
    assert load_hardware("h100-sxm-96gb").memory_gb == 96


def test_every_row_with_a_plan_makes_its_job_at_the_published_mesh():
    for row in load_all():
        made = row_job(row)
        if row.plan["fidelity"] == "none":
            assert made is None
            continue
        job, _ = made
        pub = row.published_plan
        assert (job.plan.dp, job.plan.tp, job.plan.pp, job.plan.cp) == (
            pub["dp_degree"],
            pub["tp"],
            pub["pp"],
            pub["cp"],
        )
        assert job.global_batch == row.batch and job.world_size == row.world_size


def test_zero_figure_model_has_exactly_the_papers_parameters():
    from benchbench.models.registry import model_info

    (row,) = [r for r in load_published(ZERO) if r.id == "zero-fig1-baseline"]
    assert model_info(row.model).params == 7_500_000_000


def _mutant(tmp_path, path, change) -> str:
    """The message of the ConfigError that loading ``path`` with ``change`` applied raises."""
    data = copy.deepcopy(yaml.safe_load(path.read_text()))
    change(data)
    out = tmp_path / path.name
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_published(out)
    assert str(out) in str(err.value)  # the file is named
    return str(err.value)


def test_a_row_missing_a_field_is_refused_naming_file_and_key(tmp_path):
    msg = _mutant(tmp_path, TORCHTITAN, lambda d: d["rows"][3].pop("hardware"))
    assert "rows.3: 'hardware' is a required property" in msg
    msg = _mutant(tmp_path, TORCHTITAN, lambda d: d["rows"][0]["published"].pop("memory"))
    assert "rows.0.published: 'memory' is a required property" in msg
    msg = _mutant(tmp_path, TORCHTITAN, lambda d: d["rows"][1]["model"].update(preset="9b"))  # checked as a study's
    assert "rows.1.model.preset: '9b' is not allowed for arch 'llama'; allowed: [" in msg


def test_a_plan_benchbench_does_not_know_is_refused_naming_file_and_key(tmp_path):
    def zero2(d):
        d["rows"][2]["plan"] = {"strategy": "zero2", "fidelity": "exact"}

    msg = _mutant(tmp_path, ZERO, zero2)
    assert "rows.2.plan.strategy: 'zero2' is not a benchbench strategy; allowed: [" in msg
    msg = _mutant(tmp_path, TORCHTITAN, lambda d: d["rows"][0]["plan"]["strategy_def"].update(base="zero2"))
    assert "rows.0.plan.strategy_def.base: 'zero2' is not a benchbench preset" in msg
    msg = _mutant(tmp_path, TORCHTITAN, lambda d: d["rows"][10]["plan"]["stand_in"]["strategy_def"].update(floa8=True))
    assert "rows.10.plan.stand_in.strategy_def: unknown key(s) ['floa8'] (did you mean 'floa8' -> 'float8'?)" in msg


def test_a_plan_that_is_not_the_published_one_is_refused(tmp_path):
    """The benchbench plan's mesh must be the published one; the degrees must multiply to the world
    size and local × dp to the global batch; fidelity says how the plan differs."""
    msg = _mutant(tmp_path, TORCHTITAN, lambda d: d["rows"][10]["plan"]["strategy_def"].update(tp=4))
    assert (
        "rows.10.plan: benchbench's plan has dp, tp, pp, cp = (64, 4, 1, 1) at world_size 256; published (32, 8, 1, 1)"
        in msg
    )
    msg = _mutant(tmp_path, TORCHTITAN, lambda d: d["rows"][0]["published_plan"].update(dp_degree=4))
    assert "rows.0.published_plan: dp_degree × tp × pp × cp = 4 × 1 × 1 × 1 = 4 != world_size = 8" in msg
    msg = _mutant(tmp_path, TORCHTITAN, lambda d: d["rows"][0].update(global_batch=32))
    assert "rows.0.global_batch: 32 != local_batch × dp_degree = 2 × 8" in msg
    msg = _mutant(tmp_path, TORCHTITAN, lambda d: d["rows"][0]["plan"].pop("differs"))
    assert "rows.0.plan.differs: required with fidelity 'approximate'" in msg
    msg = _mutant(tmp_path, ZERO, lambda d: d["rows"][2]["plan"].update(strategy="ddp"))
    assert "rows.2.plan.strategy: set with fidelity 'none'" in msg


def test_a_row_id_is_unique_over_all_files(tmp_path):
    for path in (TORCHTITAN, ZERO):
        (tmp_path / path.name).write_text(path.read_text())
    data = yaml.safe_load(ZERO.read_text())
    data["rows"] = data["rows"][:1]
    (tmp_path / "copy.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(
        ConfigError, match=r"zero-figure1.yaml: rows.0 \(zero-fig1-baseline\): id 'zero-fig1-baseline' is also .*copy"
    ):
        load_all(tmp_path)
