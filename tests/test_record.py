"""The run record: schema, atomic write, and a failed run never replacing a good record."""

import json

import jsonschema
import pytest

from benchbench.record import make_record, read_record, validate_record, write_record

JOB = {
    "id": "x", "study": "s", "model": "m", "model_cfg": {}, "hardware": "h", "strategy": "ddp", "plan": {},
    "world_size": 2, "dp": 2, "tp": 1, "pp": 1, "micro_batches": 1, "global_batch": 8, "seq_len": None,
    "dtype": "fp32", "steps": 1, "warmup_steps": 0, "seed": 0, "repeat": 0,
}  # fmt: skip


def test_valid_record_round_trips(tmp_path):
    rec = make_record(JOB, "ok", None, {"torch": "x"}, [0.1], [1.0], {"step_time_median_s": 0.1})
    path = write_record(rec, tmp_path / "a" / "r.json")
    assert read_record(path) == rec
    assert rec["schema_version"] == 1
    assert list(tmp_path.joinpath("a").iterdir()) == [path]  # no temporary files left behind


def test_schema_rejects_bad_records():
    rec = make_record(JOB, "ok")
    rec["status"] = "great"
    with pytest.raises(jsonschema.ValidationError):
        validate_record(rec)
    rec = make_record(JOB, "ok")
    del rec["job"]["world_size"]
    with pytest.raises(jsonschema.ValidationError):
        validate_record(rec)


def test_failed_run_does_not_overwrite_ok_record(tmp_path):
    path = tmp_path / "r.json"
    ok = make_record(JOB, "ok", None, {}, [0.1], [1.0])
    write_record(ok, path)
    where = write_record(make_record(JOB, "failed", "boom"), path)
    assert where == tmp_path / "r.failed.json"
    assert read_record(path)["status"] == "ok"
    assert json.loads(where.read_text())["error"] == "boom"


def test_failed_record_replaces_failed_record(tmp_path):
    path = tmp_path / "r.json"
    write_record(make_record(JOB, "failed", "one"), path)
    assert write_record(make_record(JOB, "failed", "two"), path) == path
    assert read_record(path)["error"] == "two"
