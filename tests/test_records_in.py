"""Records in: corrupt or foreign files are reported (path, reason) and kept out of the tables;
failed records are counted by failure kind; the columnar reductions keep the arithmetic."""

import json
import random

import numpy as np
import pandas as pd
import pytest

from benchbench.cli import main as cli
from benchbench.protocol.record import SCHEMA_VERSION
from benchbench.results.records import READABLE_SCHEMA_VERSIONS, read_records, record_problem
from benchbench.results.tables import (
    FAILURE_COLUMNS,
    REJECTED_COLUMNS,
    aggregate,
    failures_table,
    mean_ci,
    runs_table,
    sample_cv,
    scaling_table,
)
from benchbench.spec.paths import TABLES
from tests.helpers.records import rec


def write(path, record) -> str:
    path.write_text(record if isinstance(record, str) else json.dumps(record))
    return str(path)


def outputs(folder):
    return {n: folder / f"{n}.csv" for n in TABLES}


def test_a_truncated_record_is_reported_and_left_out(tmp_path, capsys):
    good = [write(tmp_path / f"g{i}.json", rec("ddp", 2, 0.5, repeat=i)) for i in range(2)]
    text = json.dumps(rec("ddp", 2, 0.4, repeat=2))
    bad = write(tmp_path / "truncated.json", text[: len(text) // 2])  # a copy cut short
    frames = aggregate([good[0], bad, good[1]], outputs(tmp_path))
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert list(runs["repeat"]) == [0, 1] and len(frames["runs"]) == 2
    assert pd.read_csv(tmp_path / "scaling.csv")["repeats"].tolist() == [2]
    rejected = pd.read_csv(tmp_path / "rejected.csv")
    assert list(rejected.columns) == REJECTED_COLUMNS and rejected["path"].tolist() == [bad]
    assert rejected["reason"].iloc[0].startswith("not valid JSON")
    assert f"benchbench: skipped record {bad}: not valid JSON" in capsys.readouterr().err


def _mutated(change) -> dict:
    r = rec("ddp", 2, 0.5)
    change(r)
    return r


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (_mutated(lambda r: r.update(schema_version=99)), "schema_version 99 not in ["),
        (_mutated(lambda r: r.pop("schema_version")), "no schema_version"),
        (_mutated(lambda r: r.update(schema_version="3")), "schema_version '3' not in"),
        ([1, 2, 3], "not a JSON object but list"),
        ("null", "not a JSON object but NoneType"),
        ('{"a": 1}', "no schema_version"),
        (_mutated(lambda r: r.pop("job")), "missing keys ['job']"),
        (_mutated(lambda r: r.pop("summary")), "missing keys ['summary']"),
        (_mutated(lambda r: r.update(status="done")), "status 'done' not in"),
        (_mutated(lambda r: r["job"].pop("world_size")), "job: missing keys ['world_size']"),
        (_mutated(lambda r: r["job"].update(world_size="2")), "job: wrong type of ['world_size']"),
        (_mutated(lambda r: r["job"]["plan"].pop("dp")), "job.plan: not an object with integer"),
        (_mutated(lambda r: r.update(job=[])), "job is list, not an object"),
        (_mutated(lambda r: r.update(loss="1.0")), "loss is not a list of numbers"),
        (_mutated(lambda r: r.update(summary=[])), "summary is not an object"),
        (_mutated(lambda r: r["summary"].update(samples_per_s="fast")), "summary: not numbers: ['samples_per_s']"),
        (_mutated(lambda r: r.update(applied="ddp")), "applied is not a list of strings"),
        (_mutated(lambda r: r.update(failure="oom")), "failure is neither an object nor null"),
        ("\xff\xfe", "not valid JSON"),
        ("", "not valid JSON"),
    ],
)
def test_foreign_records_are_rejected_with_their_reason(tmp_path, capsys, record, reason):
    bad = write(tmp_path / "bad.json", record)
    good = write(tmp_path / "good.json", rec("single", 1, 1.0))
    frames = aggregate([bad, good], outputs(tmp_path))
    assert frames["runs"]["strategy"].tolist() == ["single"]
    assert frames["rejected"]["path"].tolist() == [bad]
    assert reason in frames["rejected"]["reason"].iloc[0]
    assert f"benchbench: skipped record {bad}: " in capsys.readouterr().err


def test_readable_versions_are_3_and_the_current_one(tmp_path):
    assert READABLE_SCHEMA_VERSIONS == {3, SCHEMA_VERSION}
    records = [_mutated(lambda r, v=v: r.update(schema_version=v)) for v in sorted(READABLE_SCHEMA_VERSIONS)]
    assert all(record_problem(r) is None for r in records)
    ok, rejected = read_records([write(tmp_path / f"{i}.json", r) for i, r in enumerate(records)])
    assert len(ok) == len(records) and rejected == []


def test_a_missing_file_is_rejected_not_raised(tmp_path):
    _, rejected = read_records([tmp_path / "gone.json"], warn=False)
    assert rejected[0].reason.startswith("unreadable")


def _failed(strategy, ws, kind=None, message="boom", status="failed"):
    r = rec(strategy, ws, 0.5, status=status)
    r["error"] = f"{message}\nTraceback ..."
    r.pop("failure", None)  # as a version-3 record (before failures were recorded) ...
    if kind is not None:  # ... unless a kind is given
        r["failure"] = {"kind": kind, "rank": 1, "signal": None, "message": f"{message} (rank 1)\nmore", "log_tail": ""}
    return r


def test_failures_are_counted_by_kind_with_a_first_line_example():
    records = [
        rec("single", 1, 1.0),
        _failed("ddp", 2, "out_of_memory", "CUDA out of memory"),
        _failed("ddp", 2, "out_of_memory", "another OOM"),
        _failed("ddp", 2, "collective_timeout", "all_reduce timed out"),
        _failed("zero1", 2),  # a version-3 record: no failure entry
        _failed("fsdp", 2, status="infeasible", message="batch 8 not divisible"),
    ]
    table = failures_table(records)
    assert list(table.columns) == FAILURE_COLUMNS
    rows = {(r.strategy, r.kind): (r.count, r.message) for r in table.itertuples()}
    assert rows == {
        ("ddp", "collective_timeout"): (1, "all_reduce timed out (rank 1)"),
        ("ddp", "out_of_memory"): (2, "CUDA out of memory (rank 1)"),
        ("fsdp", "infeasible"): (1, "batch 8 not divisible"),
        ("zero1", "unknown"): (1, "boom"),
    }
    kinds = runs_table(records)["failure_kind"].tolist()
    assert kinds == ["", "out_of_memory", "out_of_memory", "collective_timeout", "unknown", "infeasible"]


def test_no_failures_and_no_rejections_still_write_headed_tables(tmp_path):
    aggregate([write(tmp_path / "a.json", rec("single", 1, 1.0))], outputs(tmp_path))
    assert (tmp_path / "failures.csv").read_text().strip() == ",".join(FAILURE_COLUMNS)
    assert (tmp_path / "rejected.csv").read_text().strip() == ",".join(REJECTED_COLUMNS)


def test_cli_aggregate_out_dir_writes_every_table(tmp_path, capsys):
    paths = [write(tmp_path / "a.json", rec("single", 1, 1.0)), write(tmp_path / "b.json", "{")]
    assert cli.main(["aggregate", "--records", *paths, "--out-dir", str(tmp_path / "t")]) == 0
    assert sorted(p.stem for p in (tmp_path / "t").iterdir()) == sorted(TABLES)
    assert pd.read_csv(tmp_path / "t" / "rejected.csv")["path"].tolist() == [paths[1]]
    assert "skipped record" in capsys.readouterr().err


def test_grouped_statistics_are_bit_for_bit_those_of_one_configuration():
    """The columnar reductions add a configuration's repeats in the order np.mean / np.std do."""
    rng = random.Random(0)
    records = []
    for ws in (1, 2, 4, 8):
        times = [rng.uniform(0.1, 1.0) for _ in range(rng.randint(1, 11))]  # up to 11: past numpy's 8-wide blocks
        records += [rec("ddp", ws, t, repeat=k) for k, t in enumerate(times)]
    rng.shuffle(records)
    table = scaling_table(records).set_index("world_size")
    for ws in (1, 2, 4, 8):
        order = [r["summary"]["samples_per_s"] for r in records if r["job"]["world_size"] == ws]
        mean, low, high = mean_ci(order)
        got = table.loc[ws, ["throughput", "throughput_ci_low", "throughput_ci_high", "throughput_cv"]]
        np.testing.assert_array_equal(got.to_numpy(dtype=float), [mean, low, high, sample_cv(order)])


def test_load_records_skips_bad_files_and_fails_only_when_none_is_usable(tmp_path, capsys):
    from benchbench.results.tables import load_records

    good, bad = write(tmp_path / "good.json", rec("single", 1, 1.0)), write(tmp_path / "bad.json", "{")
    assert [r["job"]["strategy"] for r in load_records([bad, good])] == ["single"]
    assert f"skipped record {bad}" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"no usable record; .*bad\.json: not valid JSON"):
        load_records([bad])


def test_report_counts_failures_by_kind_and_lists_rejected_records(tmp_path):
    from benchbench.results.report import build_report

    paths = [
        write(tmp_path / "ok.json", rec("single", 1, 1.0)),
        write(tmp_path / "oom.json", _failed("ddp", 2, "out_of_memory", "CUDA out of memory")),
        write(tmp_path / "cut.json", '{"schema_version": 4, "sta'),
    ]
    aggregate(paths, outputs(tmp_path))
    out = build_report(records=paths, tables=outputs(tmp_path), plots=[], out=tmp_path / "r" / "index.html")
    html = out.read_text()
    failed = html.split('id="failures"')[1].split('id="rejected"')[0]
    assert "<code>out_of_memory</code>" in failed and "CUDA out of memory (rank 1)" in failed
    assert "<table" in failed and "<td>out_of_memory</td>" in failed  # failures.csv, counted
    rejected = html.split('id="rejected"')[1].split("<h2")[0]
    assert "cut.json" in rejected and "not valid JSON" in rejected
    # a results folder from before failures.csv and rejected.csv: the report still builds
    old = {n: p for n, p in outputs(tmp_path).items() if n not in ("failures", "rejected")}
    html = build_report(records=paths[:2], tables=old, plots=[], out=tmp_path / "o" / "index.html").read_text()
    assert "None: every record file was read." in html and "<code>out_of_memory</code>" in html
