"""Bad study files are refused before any job starts, each with its own message naming the file,
the key, the bad value and what is allowed; hostile names are refused everywhere a study names
something; a hostile description is accepted, quoted on every shell line and escaped in the report.

Every case goes through ``load_config`` and the CLI (``benchbench matrix``, in process); a handful
also through ``snakemake -n`` (a few seconds each)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchbench.cli import main as cli
from benchbench.spec.config import check_config, load_config
from benchbench.spec.schema import ROOT, SAFE_NAME, ConfigError, load_schema
from benchbench.study import expand_runnable

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
HEAD = "study: s\n"
MLP = "models:\n  m: {arch: mlp, width: 8, depth: 1, out_dim: 2, batch_size: 4}\n"
GPT = "models:\n  g: {arch: gpt, layers: 1, hidden: 8, heads: 2, seq_len: 4, vocab: 16, batch_size: 4}\n"
RUN = "strategies: [ddp]\nworld_sizes: [1, 2]\n"
VALID = HEAD + MLP + RUN

# (id, file text, substrings the message must hold besides the file's name)
BAD = [
    (
        "unknown-top-level-key",
        VALID + "colour: red\n",
        ["<top level>: unknown key(s) ['colour']", "allowed: ['allow_lossy', 'batch_size'"],
    ),
    (
        "typo-in-key",
        HEAD + MLP + "stratgies: [ddp]\nworld_sizes: [1]\n",
        [
            "unknown key(s) ['stratgies'] (did you mean 'stratgies' -> 'strategies'?)",
            "'strategies' is a required property",
        ],
    ),
    (
        "typo-in-model-key",
        HEAD + "models:\n  m: {arch: mlp, widht: 8, depth: 1, out_dim: 2}\n" + RUN,
        ["models.m: 'widht' is not allowed; allowed: ['arch', 'batch_size', 'width'"],
    ),
    ("steps-wrong-type", VALID + "steps: ten\n", ["steps: 'ten' is not of type 'integer'"]),
    ("timeout-infinite", VALID + "timeout_s: .inf\n", ["timeout_s: inf is not a finite number; allowed: a finite"]),
    ("lr-nan", VALID + "optimizer: {lr: .nan}\n", ["optimizer.lr: nan is not a finite number"]),
    ("repeats-too-many", VALID + "repeats: 1000000000\n", ["repeats: 1000000000 is greater than the maximum of 1000"]),
    (
        "world-sizes-not-a-list",
        HEAD + MLP + "strategies: [ddp]\nworld_sizes: 2\n",
        ["world_sizes: 2 is not of type 'array'"],
    ),
    (
        "world-size-float",
        HEAD + MLP + "strategies: [ddp]\nworld_sizes: [1.5]\n",
        ["world_sizes.0: 1.5 is not of type 'integer'"],
    ),
    ("steps-negative", VALID + "steps: -1\n", ["steps: -1 is less than the minimum of 1"]),
    ("steps-zero", VALID + "steps: 0\n", ["steps: 0 is less than the minimum of 1"]),
    ("warmup-zero", VALID + "warmup_steps: 0\n", ["warmup_steps: 0 is less than the minimum of 1"]),
    (
        "world-size-zero",
        HEAD + MLP + "strategies: [ddp]\nworld_sizes: [0]\n",
        ["world_sizes.0: 0 is less than the minimum of 1"],
    ),
    (
        "world-sizes-duplicate",
        HEAD + MLP + "strategies: [ddp]\nworld_sizes: [1, 2, 2]\n",
        ["world_sizes: [1, 2, 2] lists 2 more than once; allowed: each value once"],
    ),
    (
        "strategies-empty",
        HEAD + MLP + "strategies: []\nworld_sizes: [1]\n",
        ["strategies: the list is empty; allowed: a list of at least 1 item(s)"],
    ),
    (
        "strategies-duplicate",
        HEAD + MLP + "strategies: [ddp, ddp]\nworld_sizes: [1]\n",
        ["strategies: ['ddp', 'ddp'] lists 'ddp' more"],
    ),
    (
        "strategy-unknown",
        HEAD + MLP + "strategies: [ddp, zero-9]\nworld_sizes: [1]\n",
        ["strategies.1: 'zero-9' is not allowed; allowed: ['3d', "],
    ),
    (
        "arch-unknown",
        HEAD + "models:\n  m: {arch: rnn}\n" + RUN,
        ["models.m.arch: 'rnn' is not allowed; allowed: ['mlp', 'gpt', 'llama', 'vit', 'custom']"],
    ),
    (
        "model-missing-size-key",
        HEAD + "models:\n  g: {arch: gpt, layers: 1, hidden: 8, heads: 2, seq_len: 4}\n" + RUN,
        ["models.g: 'vocab' is a required property; required here: ['layers', 'hidden', 'heads', 'seq_len', 'vocab']"],
    ),
    ("model-not-a-mapping", HEAD + "models:\n  m: 5\n" + RUN, ["models.m: 5 is not of type 'object'"]),
    ("models-empty", HEAD + "models: {}\n" + RUN, ["models: {} should be non-empty"]),
    (
        "model-names-differ-in-case",
        HEAD + MLP + "  M: {arch: mlp, width: 4, depth: 1, out_dim: 2}\n" + RUN,
        ["models: names ['m', 'M'] differ only in case; allowed: names that differ in more than case"],
    ),
    (
        "gpt-hidden-not-divisible",
        HEAD + GPT.replace("hidden: 8", "hidden: 9") + RUN,
        ["models.g.hidden: 9 is not divisible by heads = 2; allowed: a multiple of heads"],
    ),
    ("dtype-bad", VALID + "dtype: fp8\n", ["dtype: 'fp8' is not allowed; allowed: ['fp32', 'bf16']"]),
    ("scaling-bad", VALID + "scaling: medium\n", ["scaling: 'medium' is not allowed; allowed: ['strong', 'weak']"]),
    (
        "hardware-unknown",
        VALID + "hardware: [tpu-v9]\n",
        ["hardware.0: 'tpu-v9' is not allowed; allowed: ['a100-80gb-sxm', 'cpu-local'", "config/hardware/<name>.yaml"],
    ),
    (
        "hardware-duplicate",
        VALID + "hardware: [cpu-local, cpu-local]\n",
        ["hardware: ['cpu-local', 'cpu-local'] lists 'cpu-local' more"],
    ),
    ("repeats-zero", VALID + "repeats: 0\n", ["repeats: 0 is less than the minimum of 1"]),
    ("timeout-zero", VALID + "timeout_s: 0\n", ["timeout_s: 0 is less than or equal to the minimum of 0"]),
    ("timeout-negative", VALID + "timeout_s: -5\n", ["timeout_s: -5 is less than or equal to the minimum of 0"]),
    ("batch-size-zero", VALID + "batch_size: 0\n", ["batch_size: 0 is less than the minimum of 1"]),
    (
        "batch-not-divisible-everywhere",
        HEAD + MLP.replace("batch_size: 4", "batch_size: 3") + "strategies: [ddp]\nworld_sizes: [2]\n",
        [
            "no job to run; every combination",
            "m cpu-local ddp ws2: global batch 3 is not divisible by dp = 2",
            "allowed: a study with at least one feasible combination",
        ],
    ),
    (
        "every-combination-dropped",
        HEAD + MLP + "strategies: [single]\nworld_sizes: [2]\n",
        ["no job to run", "m cpu-local single ws2: single-process plan needs world_size 1, got 2"],
    ),
    (
        "strategy-def-unknown-key",
        VALID + "strategy_defs:\n  small: {base: ddp, bucket_mb: 1}\n",
        ["strategy_defs.small: unknown key(s) ['bucket_mb'] (did you mean 'bucket_mb' -> 'bucket_cap_mb'?)"],
    ),
    (
        "strategy-def-bad-value",
        VALID + "strategy_defs:\n  small: {base: ddp, bucket_cap_mb: 0}\n",
        ["strategy_defs.small.bucket_cap_mb: 0 is less than or equal to the minimum of 0"],
    ),
    (
        "strategy-def-bad-tp",
        VALID + "strategy_defs:\n  t: {base: fsdp, tp: two}\n",
        ["strategy_defs.t.tp: 'two' is not valid under any of the given schemas (allowed: an integer >= 1, or 'all')"],
    ),
    (
        "strategy-def-ac-every-without-selective",
        VALID + "strategy_defs:\n  ac3: {base: ddp-ac, ac_every: 3}\n",
        ["strategy_defs.ac3.ac_every: 3 set with activation_checkpoint 'full'; allowed: only with 'selective'"],
    ),
    (
        "strategy-def-unknown-base",
        VALID + "strategy_defs:\n  small: {base: ddp2}\n",
        ["strategy_defs.small.base: 'ddp2' is not allowed; allowed: ['3d', "],
    ),
    (
        "strategy-def-no-base",
        VALID + "strategy_defs:\n  small: {bucket_cap_mb: 1}\n",
        ["strategy_defs.small: 'base' is a required property"],
    ),
    (
        "strategy-def-shadows-preset",
        VALID + "strategy_defs:\n  ddp: {base: fsdp}\n",
        ["strategy_defs.ddp: 'ddp' is a preset's name; allowed: a name that is not a preset"],
    ),
    (
        "optimizer-unknown-key",
        VALID + "optimizer: {lr: 0.1, momentum: 0.9}\n",
        ["optimizer: unknown key(s) ['momentum']"],
    ),
    ("loss-tolerance-negative", VALID + "loss_tolerance: -1\n", ["loss_tolerance: -1 is less than the minimum of 0"]),
    (
        "allow-lossy-not-boolean",
        VALID + "allow_lossy: sometimes\n",
        ["allow_lossy: 'sometimes' is not of type 'boolean'", "(allowed: true or false: whether"],
    ),
    ("description-not-text", VALID + "description: 5\n", ["description: 5 is not of type 'string'"]),
    (
        "description-with-nul",
        VALID + 'description: "a\\0b"\n',
        ["description: 'a\\x00b' does not match", "any characters but NUL, which no command line can carry"],
    ),
    ("study-missing", MLP + RUN, ["<top level>: 'study' is a required property; required here: ['study', 'models'"]),
    ("study-not-text", "study: 12\n" + MLP + RUN, ["study: 12 is not of type 'string'"]),
    (
        "duplicate-yaml-key",
        VALID + "steps: 1\nsteps: 3\n",
        ["duplicate key 'steps' at line 7; allowed: each key once per mapping"],
    ),
    (
        "duplicate-model",
        HEAD + "models:\n  m: {arch: mlp, width: 8, depth: 1, out_dim: 2}\n"
        "  m: {arch: mlp, width: 4, depth: 1, out_dim: 2}\n" + RUN,
        ["duplicate key 'm' at line 4"],
    ),
    ("yaml-syntax-error", HEAD + "models: {m: [\n" + RUN, ["is not valid YAML", "line "]),
    (
        "not-a-mapping",
        "- study\n- models\n",
        ["expected a mapping of keys (study, models, strategies, world_sizes, ...)", "got list"],
    ),
    ("a-scalar", "hello\n", ["expected a mapping", "got str"]),
    ("empty-file", "", ["expected a mapping", "got nothing (empty file)"]),
]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_the_valid_base_is_valid(tmp_path):
    assert load_config(_write(tmp_path, VALID))["study"] == "s"


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_study_is_refused_with_its_own_message(tmp_path, capsys, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        expand_runnable(load_config(path), f"study config {path}")  # what `matrix` and the Snakefile do
    msg = str(e.value)
    assert str(path) in msg
    for part in expected:
        assert part in msg
    assert cli.main(["matrix", "--config", str(path)]) == 2  # the CLI: exit 2, the same message, no job listed
    out = capsys.readouterr()
    assert msg in out.err and out.out == ""


def test_there_are_at_least_25_distinct_cases():
    assert len(BAD) >= 25 and len({c[0] for c in BAD}) == len(BAD) and len({c[1] for c in BAD}) == len(BAD)


def _snakemake(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--cores", "1", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )


SNAKEMAKE_CASES = [
    "typo-in-key",
    "duplicate-yaml-key",
    "every-combination-dropped",
    "study-missing",
    "world-sizes-duplicate",
]


@pytest.mark.slow
@pytest.mark.parametrize("case", SNAKEMAKE_CASES)
def test_snakemake_refuses_bad_study_before_any_job(tmp_path, case):
    """The same message from ``snakemake -n``; a study file that lacks a key is never completed
    from the default study (``study-missing`` once ran the default study's name)."""
    _, text, expected = next(c for c in BAD if c[0] == case)
    path = _write(tmp_path, text)
    proc = _snakemake(tmp_path, "-n", "--configfile", str(path))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "ConfigError" in out and str(path) in out
    for part in expected:
        assert part in out
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_snakemake_refuses_a_file_that_is_not_a_study(tmp_path):
    """Snakemake itself reads --configfile first; an empty file or a list stops there (its message)."""
    proc = _snakemake(tmp_path, "-n", "--configfile", str(_write(tmp_path, "- a\n")))
    assert proc.returncode != 0
    assert "Config file must be given as JSON or YAML with keys at top level" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


# ---- hostile names ------------------------------------------------------------------------------

HOSTILE = [
    "$(touch PWNED)",
    "`touch PWNED`",
    "a;touch PWNED",
    "a|touch PWNED",
    "a&touch PWNED",
    "a&&b",
    "..",
    ".",
    ".hidden",
    "a/b",
    "../up",
    "/abs",
    "a'b",
    'a"b',
    "a b",
    "<script>alert(1)</script>",
    "a\nb",
    "ddp\n",
    "dd\u0440",
    "\uff41",
    "a\u200bb",
    "",
    "-rf",
    "--help",
    "x" * 81,
    "a*",
    "~user",
    "a{b}",
]
BASE = {
    "study": "s",
    "models": {"m": {"arch": "mlp", "width": 8, "depth": 1, "out_dim": 2}},
    "strategies": ["ddp"],
    "world_sizes": [1],
}
PLACES = {
    "study": (lambda n: {"study": n}, "study: "),
    "model": (lambda n: {"models": {n: BASE["models"]["m"]}}, "models: key "),
    "hardware": (lambda n: {"hardware": [n]}, "hardware.0: "),
    "strategy": (lambda n: {"strategies": [n]}, "strategies.0: "),
    "strategy_def": (lambda n: {"strategy_defs": {n: {"base": "ddp"}}, "strategies": [n]}, "strategy_defs: key "),
}


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize("name", HOSTILE, ids=[ascii(n)[:24] for n in HOSTILE])
def test_hostile_name_is_refused_wherever_a_study_names_something(tmp_path, place, name):
    change, key = PLACES[place]
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**BASE, **change(name)}, allow_unicode=True))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg and f"{key}{name!r}" in msg, msg
    assert "is not a safe name" in msg and "allowed: ASCII letters, digits" in msg
    assert not list(tmp_path.rglob("PWNED*")) and sorted(os.listdir(tmp_path)) == ["study.yaml"]


def test_the_schema_and_the_code_agree_on_safe_names():
    pattern = load_schema("config")["$defs"]["name"]["pattern"]
    import re

    for name in [*HOSTILE, "ok", "a.b-c_d", "gpt-tiny", "3d", "x" * 80, "a\n"]:
        assert (re.search(pattern, name) is not None and len(name) <= 80) == bool(SAFE_NAME.fullmatch(name)), name
    smk = (ROOT / "workflow/rules/common.smk").read_text()
    for wildcard in ("study", "model", "hardware", "strategy"):
        assert f'{wildcard}=r"{SAFE_NAME.pattern.split("{")[0]}*"' in smk


def test_names_that_look_like_numbers_or_missing_values_are_valid():
    """Safe names a YAML or CSV reader could mistake for something else stay names."""
    cfg = check_config({**BASE, "study": "1", "models": {"NA": BASE["models"]["m"], "1e3": BASE["models"]["m"]}})
    assert list(cfg["models"]) == ["NA", "1e3"]


HOSTILE_DESCRIPTION = (
    "--help $(touch PWNED) `touch PWNED2`; touch PWNED3 | cat & {output} ${HOME} 'single' \"double\"\n"
    "<script>alert('x')</script> <b>bold</b> &amp; \u00e9\u4e2d \\ end"
)
TINY_MLP = {"arch": "mlp", "width": 8, "depth": 1, "out_dim": 2, "batch_size": 4}
TINY = {
    "study": "hostile-desc",
    "models": {"m": TINY_MLP},
    "strategies": ["single"],
    "world_sizes": [1, 2],
    "steps": 1,
    "warmup_steps": 1,
    "timeout_s": 120,
}


def test_every_value_on_every_shell_line_is_quoted_and_no_rule_runs_python_inline():
    """The audit, pinned: each ``{placeholder}`` of every ``shell:`` line ends in ``:q``; no rule
    has a ``run:`` block (its Python would see raw config values, and it re-reads the workflow)."""
    import re

    lines = 0
    for smk in [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]:
        text = smk.read_text()
        assert not re.search(r"^\s+run:", text, re.M), smk
        for block in re.findall(r"^\s+shell:\n((?:\s+\".*\"\n)+)", text, re.M):
            lines += 1
            for field in re.findall(r"(?<!\{)\{([^{}]+)\}(?!\})", block):
                assert field.endswith(":q"), f"{smk.name}: {{{field}}} is not quoted"
    # bench, bench_batch, aggregate, plot, report, calibrate, predict, plot_costmodel (dropped is a script:
    # its list can outgrow a command line)
    assert lines == 8


def test_any_description_is_accepted():
    assert check_config({**TINY, "description": HOSTILE_DESCRIPTION})["description"] == HOSTILE_DESCRIPTION
    assert "description" not in check_config(TINY)  # optional, no default


@pytest.mark.slow
@pytest.mark.parametrize("description", [None, "", HOSTILE_DESCRIPTION], ids=["absent", "empty", "hostile"])
def test_every_shell_line_quotes_the_description_and_names(tmp_path, description):
    """``snakemake -n -p``: the report's line passes the description as one quoted word
    (``--description=`` when the study has none; ``--description {..:q}`` once gave argparse no
    value), and every other line quotes its values."""
    study = TINY if description is None else {**TINY, "description": description}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, allow_unicode=True))
    proc = _snakemake(tmp_path, "-n", "-p", "-F", "--configfile", str(path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    # Snakemake's `:q` writes nothing for an empty string: `--description=` still passes one (empty) word
    assert f"--description={shlex.quote(description) if description else ''} >" in out
    assert "--spec '{" in out  # the job's JSON, one quoted word
    assert not list(tmp_path.rglob("PWNED*")) and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_hostile_description_end_to_end(tmp_path):
    """A real tiny study: nothing the description says runs, nothing is written outside results/
    (and Snakemake's own .snakemake/), and the report shows the description HTML-escaped."""
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**TINY, "description": HOSTILE_DESCRIPTION}, allow_unicode=True))
    proc = _snakemake(tmp_path, "--configfile", str(path), "--profile", str(ROOT / "profiles/ci"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.home().glob("PWNED*"))
    top = {p.name for p in tmp_path.iterdir()}
    assert top <= {"study.yaml", "results", ".snakemake"}, top
    assert {p.name for p in (tmp_path / "results").iterdir()} == {"hostile-desc"}
    html = (tmp_path / "results/hostile-desc/report/index.html").read_text()
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &lt;b&gt;bold&lt;/b&gt; &amp;amp;" in html
    assert html.count("<script") == 1 and "<b>bold" not in html  # the report's own inline script only
    assert "$(touch PWNED) `touch PWNED2`; touch PWNED3 | cat &amp; {output} ${HOME}" in html
    assert "single-process plan needs world_size 1, got 2" in html  # the dropped combination, listed
