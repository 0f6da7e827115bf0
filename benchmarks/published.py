"""The cost model against published runs: predicted vs published throughput and memory per row.

    PYTHONPATH=. .venv/bin/python benchmarks/published.py [--markdown] [--folder config/published]

For every row of ``config/published/*.yaml`` (:mod:`benchbench.spec.published`: torchtitan's Llama
3.1 H100 tables, ZeRO's Figure 1) it makes the job of the row's benchbench plan, predicts it with
the cost model as it is (:func:`benchbench.costmodel.predict.predict_job` on a calibration from the
hardware profile's specs, :func:`benchbench.costmodel.calibration.from_spec`) and prints: the
published and predicted tokens/s per GPU and memory with the error (predicted − published) /
published, whether the plan is predicted to fit and why not, and whether the row was used to fit
anything (``fitting``) or is ``held-out``. A row without a benchbench plan, or whose plan the rules
refuse, is printed as ``no plan`` with the reason; a row's stand-in plan (a nearby plan where its
own is refused) is printed beneath it and never counted in the row's errors.

Then the summary the targets of issue 25 use: median and worst |error| of tokens/s per GPU over
held-out rows (target ≤ 15 % and ≤ 30 %), memory error where published (each ≤ 15 %), runs
predicted not to fit (target none). Nothing is fitted here. Runs in about a second; imports no
torch (asserted at the end).
"""

from __future__ import annotations

import argparse
import datetime
import re
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from benchbench.costmodel.calibration import Calibration, from_spec
from benchbench.costmodel.predict import Prediction, predict_job
from benchbench.spec import gpu_features
from benchbench.spec.hardware import load_hardware
from benchbench.spec.published import GB, GIB, PUBLISHED_DIR, PublishedRow, load_all, row_job
from benchbench.spec.schema import ROOT

STEP_MEDIAN_TARGET, STEP_WORST_TARGET, MEMORY_TARGET = 0.15, 0.30, 0.15


@dataclass(frozen=True)
class Outcome:
    """One printed line: a row's own plan, or its stand-in."""

    row: PublishedRow
    stand_in: bool  # the line of the row's stand-in plan
    status: str  # exact | approximate | stand-in | no plan (none, or the rules refuse it)
    note: str  # how the plan differs, or why there is none
    pred: Prediction | None  # None: no plan, or the rules refused it
    seq_len: int | None  # tokens per sample of the job (None: not a sequence model, or no job)

    @property
    def label(self) -> str:
        return f"  ↳ {self.row.id} stand-in" if self.stand_in else self.row.id

    @property
    def tokens_pred(self) -> float | None:
        """Predicted tokens/s per GPU (sequence models with a prediction)."""
        if self.pred is None or self.seq_len is None:
            return None
        return self.pred.samples_per_s * self.seq_len / self.row.world_size

    @property
    def tokens_error(self) -> float | None:
        pub, pred = self.row.published["tokens_per_s_per_gpu"], self.tokens_pred
        return None if pub is None or pred is None else (pred - pub) / pub

    @property
    def memory_pred(self) -> float | None:
        """Predicted bytes of what the published memory measures (peak, or model state only)."""
        mem = self.row.published["memory"]
        if self.pred is None or mem is None:
            return None
        return self.pred.memory_bytes if mem["what"] == "peak" else self.pred.model_state_bytes

    @property
    def memory_error(self) -> float | None:
        pub, pred = self.row.memory_bytes, self.memory_pred
        return None if pub is None or pred is None else (pred - pub) / pub

    @property
    def fits(self) -> str:
        """``yes``, ``no: <why>`` or ``-`` (no prediction); accounting examples say they are not judged."""
        if self.pred is None or self.pred.fits is None:
            return "-"
        limit = self.pred.memory_limit_bytes or 0.0
        verdict = "yes" if self.pred.fits else f"no: {self.pred.memory_bytes / 1e9:.1f} > {limit / 1e9:.0f} GB"
        return verdict if self.row.run else f"{verdict} (not a run: not judged)"


@contextmanager
def published_environment() -> Iterator[None]:
    """Predict float8 plans whether or not torchao is installed here: it is a dependency of the
    ranks that run float8 (the published runs had it), not of predicting them; without this, the
    plan rules would refuse every float8 row for this environment's sake."""
    with mock.patch.object(gpu_features, "torchao_available", return_value=True):
        yield


def outcomes(row: PublishedRow, calibrations: dict[str, Calibration]) -> list[Outcome]:
    """The row's own line and, where it has one, its stand-in's."""
    cal = calibrations.setdefault(row.hardware, from_spec(row.hardware, load_hardware(row.hardware)))
    out = []
    for stand_in in (False, True) if "stand_in" in row.plan else (False,):
        made = row_job(row, stand_in)
        note = row.plan["stand_in"]["differs"] if stand_in else row.plan.get("differs", "")
        status = "stand-in" if stand_in else row.plan["fidelity"]
        if made is None:
            out.append(Outcome(row, stand_in, "no plan", note, None, None))
        elif made[1] is not None:
            out.append(Outcome(row, stand_in, "no plan", f"refused by the plan rules: {made[1]}", None, None))
        else:
            out.append(Outcome(row, stand_in, status, note, predict_job(made[0], cal), made[0].seq_len))
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


def _num(x: float | None, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def _mem(o: Outcome, value: float | None) -> str:
    mem = o.row.published["memory"]
    if mem is None or value is None:
        return "-"
    return f"{value / (GIB if mem['unit'] == 'GiB' else GB):,.1f} {mem['unit']}"


def cells(o: Outcome) -> list[str]:
    """One table row: id, source, plan, tokens/s/GPU published / predicted / error, memory
    published / predicted / error, fits, subset."""
    r = o.row
    return [
        o.label,
        f"{r.source['short']} {r.table.split(' (')[0].split(':')[0]}",
        o.status,
        _num(r.published["tokens_per_s_per_gpu"]),
        _num(o.tokens_pred),
        _pct(o.tokens_error),
        _mem(o, r.memory_bytes),
        _mem(o, o.memory_pred),
        _pct(o.memory_error),
        o.fits,
        r.subset,
    ]


HEADER = ["row", "source", "plan", "tok/s/GPU pub", "pred", "error", "memory pub", "pred", "error", "fits", "subset"]


def table(lines: list[Outcome], markdown: bool) -> str:
    """The table, as aligned text or as Markdown."""
    rows = [HEADER] + [cells(o) for o in lines]
    if markdown:
        out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        return "\n".join(out + ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows[1:]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    right = {3, 4, 5, 6, 7, 8}
    fmt = [lambda c, w=w, i=i: c.rjust(w) if i in right else c.ljust(w) for i, w in enumerate(widths)]
    return "\n".join("  ".join(f(c) for f, c in zip(fmt, r, strict=True)).rstrip() for r in rows)


def _stats(values: list[tuple[float, str]]) -> tuple[float, float, str] | None:
    """Median and worst |error| and the worst row's id, or ``None`` without values."""
    if not values:
        return None
    worst = max(values, key=lambda v: abs(v[0]))
    return statistics.median(abs(v) for v, _ in values), abs(worst[0]), worst[1]


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def summary(lines: list[Outcome]) -> list[str]:  # long: one line per target of the issue, each with its rows
    """The figures the issue's targets use, one line each, with the verdict."""
    planned = [o for o in lines if o.status in ("exact", "approximate")]
    out = []
    for subset in ("held-out", "fitting"):
        tok = [(o.tokens_error, o.row.id) for o in planned if o.row.subset == subset and o.tokens_error is not None]
        s = _stats(tok)
        if s is None:
            out.append(f"tokens/s/GPU, {subset} rows with a benchbench plan: none")
            continue
        verdict = (
            f" — targets median ≤ {STEP_MEDIAN_TARGET:.0%}: {_verdict(s[0] <= STEP_MEDIAN_TARGET)}, "
            f"worst ≤ {STEP_WORST_TARGET:.0%}: {_verdict(s[1] <= STEP_WORST_TARGET)}"
            if subset == "held-out"
            else " (fitted on: not a test of the model)"
        )
        out.append(
            f"tokens/s/GPU, {subset} rows with a benchbench plan (n = {len(tok)}): median |error| {s[0]:.1%}, "
            f"worst {s[1]:.1%} ({s[2]}){verdict}"
        )
    mem = [(o.memory_error, o.row.id) for o in planned if o.memory_error is not None]
    s = _stats(mem)
    if s is None:
        out.append("memory, rows with a published figure and a benchbench plan: none")
    else:
        within = sum(abs(v) <= MEMORY_TARGET for v, _ in mem)
        out.append(
            f"memory, rows with a published figure and a benchbench plan (n = {len(mem)}): median |error| "
            f"{s[0]:.1%}, worst {s[1]:.1%} ({s[2]}); within {MEMORY_TARGET:.0%}: {within} of {len(mem)} — "
            f"target every row: {_verdict(within == len(mem))}"
        )
    runs = [o for o in planned if o.row.run]
    misses = [o.row.id for o in runs if o.pred is not None and o.pred.fits is False]
    out.append(
        f"runs predicted not to fit their hardware: {len(misses)} of {len(runs)} with a benchbench plan"
        + (f" ({', '.join(misses)})" if misses else "")
        + f" — target none: {_verdict(not misses)}"
    )
    none = [o for o in lines if o.status == "no plan" and not o.stand_in]
    out.append(f"rows without a benchbench plan the rules accept: {len(none)} of {len({o.row.id for o in lines})}")
    stand = [o for o in lines if o.status == "stand-in"]
    if stand:
        tok = _stats([(o.tokens_error, o.row.id) for o in stand if o.tokens_error is not None])
        unfit = [o.row.id for o in stand if o.pred is not None and o.pred.fits is False]
        out.append(
            f"stand-ins (n = {len(stand)}, not counted above): tokens/s/GPU median |error| "
            + (f"{tok[0]:.1%}, worst {tok[1]:.1%}" if tok else "-")
            + f"; predicted not to fit: {len(unfit)} of {len(stand)}"
        )
    return out


#: The cost model's own notes on a prediction (segments of ``Prediction.terms``) that say what it
#: leaves out; printed once each with the rows they concern.
MODEL_NOTES = re.compile(r"^(compile|float8|activations): ")


def _grouped(pairs: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(text, ids) for each distinct text of (id, text) pairs, in first-seen order."""
    groups: dict[str, list[str]] = {}
    for row_id, text in pairs:
        groups.setdefault(text, []).append(row_id)
    return [(text, ids) for text, ids in groups.items()]


def notes(lines: list[Outcome]) -> list[str]:
    """Where each source was read; how the plans differ or why there is none, each text once with
    its rows; batches not published; the cost model's notes on what it leaves out."""
    sources = {o.row.file: o.row for o in lines}
    out = []
    for row in sources.values():
        s = row.source
        where = f"{s['repository']} {s['path']} at {s['commit'][:7]}" if "repository" in s else s["paper"]
        out.append(f"source {s['short']} ({row.file}): {where}, read {s['read']}: {s.get('url', '')}")
    for status in ("approximate", "no plan", "stand-in"):
        pairs = [(o.label.strip("↳ "), o.note) for o in lines if o.status == status and o.note]
        out += [f"{status} — {', '.join(ids)}: {text}" for text, ids in _grouped(pairs)]
    own = [o.row for o in lines if not o.stand_in and o.row.global_batch is None]
    for kind, ids in _grouped([(r.id, "local" if r.local_batch else "none") for r in own]):
        how = "local batch × the published dp degree" if kind == "local" else "1 sample per rank (no batch published)"
        out.append(f"global batch not published — {', '.join(ids)}: the job uses {how}")
    pairs = [(o.label.strip("↳ "), note) for o in lines if o.pred is not None for note in model_notes(o.pred)]
    out += [f"cost model — {', '.join(ids)}: {text}" for text, ids in _grouped(pairs)]
    return out


def model_notes(pred: Prediction) -> list[str]:
    """The cost model's notes in ``pred.terms`` (:data:`MODEL_NOTES`); a segment without ": " that
    follows one continues it (a note may hold "; ")."""
    out: list[str] = []
    for seg in pred.terms.split("; "):
        if MODEL_NOTES.match(seg):
            out.append(seg)
        elif out and ": " not in seg:
            out[-1] += f"; {seg}"
    return out


def provenance() -> str:
    """The date (UTC) and the commit this ran at (``+ changes`` where the work tree differs)."""

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
        return proc.stdout.strip() if proc.returncode == 0 else "?"

    dirty = " + changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    now = datetime.datetime.now(datetime.UTC)
    return f"{now:%Y-%m-%d %H:%M} UTC, commit {git('rev-parse', '--short', 'HEAD')}{dirty}"


def calibration_lines(calibrations: dict[str, Calibration]) -> list[str]:
    """What each from-spec calibration assumes (compute rates, memory bandwidth)."""
    out = []
    for name, cal in sorted(calibrations.items()):
        rates = ", ".join(f"{k} {v / 1e12:.0f}" for k, v in cal.compute_rates.items() if v)
        bw = f"{cal.memory_bandwidth / 1e9:,.0f} GB/s" if cal.memory_bandwidth else "-"
        out.append(f"{name}: from spec; sustained TFLOP/s {rates}; memory {bw}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, default=PUBLISHED_DIR, help="published runs (default config/published)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown (docs/VALIDATION.md)")
    args = ap.parse_args(argv)
    calibrations: dict[str, Calibration] = {}
    with published_environment():
        rows = load_all(args.folder)
        lines = [o for row in rows for o in outcomes(row, calibrations)]
    fitted = [r.id for r in rows if r.subset == "fitting"]
    fitting = f"fitted on {', '.join(fitted)}; the other rows held out" if fitted else "nothing fitted: all held out"
    print(f"published runs against the cost model ({provenance()}); {fitting}")
    print(f"float8 plans predicted as if torchao were installed (here: {gpu_features.torchao_available()})")
    print("\n".join(calibration_lines(calibrations)), end="\n\n")
    print(table(lines, args.markdown), end="\n\n")
    print("\n".join(("- " if args.markdown else "") + n for n in notes(lines)), end="\n\n")
    print("\n".join(("- " if args.markdown else "") + s for s in summary(lines)))
    assert "torch" not in sys.modules, "benchmarks/published.py imported torch (the workflow side must not)"
    return 0


if __name__ == "__main__":
    sys.exit(main())
