"""The GitHub Actions example (.github/workflows/benchbench.yml) cannot run here: it is read as
YAML and checked against the project — its triggers and jobs, and that every command it calls
exists (make targets, ``benchbench`` subcommands and options, Snakemake profiles and study files),
that the artifact a PR downloads is the one main uploads, and that what it publishes is the
study's report folder."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml

from benchbench.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "benchbench.yml"
STUDY = "config/studies/ci.yaml"


@pytest.fixture(scope="module")
def wf() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps(wf: dict, job: str) -> list[dict]:
    return wf["jobs"][job]["steps"]


def step_using(wf: dict, job: str, action: str) -> list[dict]:
    return [s for s in steps(wf, job) if s.get("uses", "").split("@")[0] == action]


def commands(wf: dict) -> list[tuple[str, list[str]]]:
    """Every shell command line of every ``run:`` step (continuations joined), as words."""
    out = []
    for job, spec in wf["jobs"].items():
        for s in spec.get("steps", []):
            for line in re.sub(r"\\\n\s*", " ", s.get("run", "")).splitlines():
                if line.strip() and not line.strip().startswith("#"):
                    out.append((job, shlex.split(line, comments=True)))
    return out


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):(?!=)", (ROOT / "Makefile").read_text(), flags=re.M))


def benchbench_path(what: str) -> str:
    """What ``benchbench path WHAT --config STUDY`` prints: where the layout puts the study's outputs."""
    from benchbench.cli.main import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["path", what, "--config", str(ROOT / STUDY)]) == 0
    return buf.getvalue().strip()


def test_triggers_and_jobs(wf):
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "pull_request" in on and on["push"]["branches"] == ["main"]
    assert set(wf["jobs"]) == {"study", "pages"}
    assert wf["jobs"]["pages"]["needs"] == "study" and wf["jobs"]["pages"]["if"] == "github.event_name == 'push'"
    assert wf["permissions"] == {"contents": "read"}  # the least by default; jobs widen what they need
    for job in wf["jobs"].values():
        for s in job["steps"]:
            if "uses" in s:
                assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", s["uses"]), s["uses"]  # a released major version


def test_study_job_sets_up_runs_compares_and_uploads(wf):
    study = steps(wf, "study")
    order = [s.get("uses", "").split("@")[0] or s["run"].split()[0] for s in study]
    assert order[:4] == ["actions/checkout", "actions/setup-python", "make", ".venv/bin/snakemake"]
    assert step_using(wf, "study", "actions/setup-python")[0]["with"]["python-version"] == "3.11"
    run_lines = [" ".join(words) for _, words in commands(wf)]
    assert "make setup" in run_lines
    assert f".venv/bin/snakemake --configfile {STUDY} --profile profiles/ci" in run_lines
    compare = [s for s in study if s.get("run", "").startswith(".venv/bin/benchbench compare")]
    assert len(compare) == 1 and not compare[0].get("continue-on-error"), "the comparison gates the PR"
    assert "pull_request" in compare[0]["if"]


def test_the_pr_compares_against_what_main_uploaded(wf):
    results = benchbench_path("dir")
    uploads = {s["with"]["name"]: s for s in step_using(wf, "study", "actions/upload-artifact")}
    assert uploads["benchbench-results-ci"]["with"]["path"] == results
    assert "if" not in uploads["benchbench-results-ci"] or "pull_request" not in uploads["benchbench-results-ci"]["if"]
    (download,) = step_using(wf, "study", "actions/download-artifact")
    assert download["with"]["name"] == "benchbench-results-ci"
    assert {"run-id", "github-token"} <= set(download["with"])
    assert "steps.main.outputs.run-id" in download["with"]["run-id"]
    (compare,) = [w for _, w in commands(wf) if w[:2] == [".venv/bin/benchbench", "compare"]]
    assert compare[2:4] == [download["with"]["path"], results]  # BASE = main's, NEW = this run's


def test_the_report_folder_is_uploaded_and_published(wf):
    report_dir = str(Path(benchbench_path("report")).parent)
    assert report_dir == "results/ci/report"
    uploads = {s["with"]["name"]: s for s in step_using(wf, "study", "actions/upload-artifact")}
    assert uploads["benchbench-report"]["with"]["path"] == report_dir
    (pages_artifact,) = step_using(wf, "study", "actions/upload-pages-artifact")
    assert pages_artifact["with"]["path"] == report_dir and pages_artifact["if"] == "github.event_name == 'push'"
    pages = wf["jobs"]["pages"]
    assert pages["permissions"] == {"pages": "write", "id-token": "write"}
    assert pages["environment"]["name"] == "github-pages"
    (deploy,) = step_using(wf, "pages", "actions/deploy-pages")
    assert deploy["id"] == "deployment" and "steps.deployment.outputs.page_url" in pages["environment"]["url"]


def test_every_command_it_calls_exists(wf):
    targets, parser = makefile_targets(), build_parser()
    subcommands = set(parser._subparsers._group_actions[0].choices)  # the CLI's own list
    seen = set()
    for job, words in commands(wf):
        tool = words[0]
        seen.add(tool)
        if tool == "make":
            assert set(words[1:]) <= targets, (job, words)
        elif tool == ".venv/bin/benchbench":
            assert words[1] in subcommands, (job, words)
            parser.parse_args(words[1:])  # every option it passes exists (SystemExit otherwise)
        elif tool == ".venv/bin/snakemake":
            args = dict(zip(words[1::2], words[2::2], strict=False))
            assert (ROOT / args["--configfile"]).is_file() and (ROOT / args["--profile"] / "config.yaml").is_file()
        else:  # shell plumbing: only the GitHub CLI, assignments and tests of what it found
            assert tool in {"gh", "echo", "["} or re.match(r"\w+=\$\(gh ", " ".join(words)), (job, words)
    assert {"make", ".venv/bin/snakemake", ".venv/bin/benchbench"} <= seen
    named = set(re.findall(r"(?:config|profiles)/[\w./-]+", WORKFLOW.read_text()))
    assert named and all((ROOT / p).exists() for p in named), named
