"""The run record: schema, atomic write, and a failed run never replacing a good record."""

import json
import re

import jsonschema
import pytest

from benchbench.protocol.record import SCHEMA_VERSION, job_of, make_record, read_record, validate_record, write_record
from benchbench.spec.job import Job
from tests.helpers.jobs import make_test_job

JOB = make_test_job("ddp", 2, steps=1, warmup_steps=0)


def test_valid_record_round_trips(tmp_path):
    rec = make_record(
        job=JOB, status="ok", env={"torch": "x"}, step_time_s=[0.1], loss=[1.0], summary={"step_time_median_s": 0.1}
    )
    path = write_record(rec, tmp_path / "a" / "r.json")
    assert read_record(path) == rec
    assert job_of(read_record(path)) == JOB  # the typed job survives the trip through JSON
    assert rec["schema_version"] == SCHEMA_VERSION == 4
    assert list(tmp_path.joinpath("a").iterdir()) == [path]  # no temporary files left behind


def test_schema_rejects_bad_records():
    rec = make_record(job=JOB, status="ok", step_time_s=[0.1], loss=[1.0])
    rec["status"] = "great"
    with pytest.raises(jsonschema.ValidationError):
        validate_record(rec)
    rec = make_record(job=JOB, status="ok", step_time_s=[0.1], loss=[1.0])
    del rec["job"]["world_size"]
    with pytest.raises(jsonschema.ValidationError):
        validate_record(rec)


def test_failed_run_does_not_overwrite_ok_record(tmp_path):
    path = tmp_path / "r.json"
    ok = make_record(job=JOB, status="ok", step_time_s=[0.1], loss=[1.0])
    write_record(ok, path)
    where = write_record(make_record(job=JOB, status="failed", error="boom"), path)
    assert where == tmp_path / "r.failed.json"
    assert read_record(path)["status"] == "ok"
    assert json.loads(where.read_text())["error"] == "boom"


def test_failed_record_replaces_failed_record(tmp_path):
    path = tmp_path / "r.json"
    write_record(make_record(job=JOB, status="failed", error="one"), path)
    assert write_record(make_record(job=JOB, status="failed", error="two"), path) == path
    assert read_record(path)["error"] == "two"


def test_make_record_is_keyword_only():
    with pytest.raises(TypeError):
        make_record(JOB, "ok")  # type: ignore[misc]


def test_job_from_dict_names_unknown_and_missing_keys():
    d = JOB.to_dict()
    d["dp"] = 2  # the mesh sizes live in the plan only
    del d["seed"]
    with pytest.raises(ValueError, match=r"unknown keys \['dp'\], missing keys \['seed'\]"):
        Job.from_dict(d)
    assert Job.from_dict(JOB.to_dict()) == JOB
    assert JOB.to_dict()["plan"]["dp"] == JOB.dp == 2


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"dtype": "fp16"}, "dtype: 'fp16' is not one of ['fp32', 'bf16']"),
        ({"steps": 0}, "steps: 0 is less than the minimum of 1"),
        ({"world_size": "2"}, "world_size: '2' is not of type 'integer'"),
        ({"plan": "x"}, "plan: 'x' is not of type 'object'"),
    ],
)
def test_spec_json_is_checked_before_anything_runs(change, expected):
    from benchbench.protocol.record import job_from_json

    with pytest.raises(ValueError, match=re.escape(expected)):
        job_from_json({**JOB.to_dict(), **change})


def test_plan_typo_is_an_error_not_the_default_plan():
    from benchbench.protocol.record import job_from_json

    d = JOB.to_dict()
    d["plan"] = {**d["plan"], "tpp": 2}
    with pytest.raises(ValueError, match=r"unknown plan keys \['tpp'\]"):
        job_from_json(d)
