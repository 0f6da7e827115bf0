"""Recommend a plan: every candidate plan of a model on a hardware profile at a world size, ranked
by throughput among those that fit in memory — measured where an ok record of that exact
configuration exists, predicted elsewhere, each labelled — with the runner-up, the margin, the
plans excluded by memory and the winner's ``strategy_defs`` entry to paste into a study.

The calibration of a profile (:func:`calibration_for`): a file given, else
``results/<study>/calibration/<hardware>.json`` when ``benchbench calibrate`` wrote one, else the
profile's specs (:func:`~benchbench.costmodel.calibration.from_spec`), else an error naming the
missing figure.

Exact plans only, unless asked (``allow_lossy``: ``--allow-lossy``, the study's ``allow_lossy``
key): a lossy plan (:func:`~benchbench.spec.plan.lossy_kinds`: gradient compression, float8
matmuls) trains a different model, so it is not a plan a user can take as it stands. Asked for,
lossy plans are ranked with the rest and each is labelled (:func:`lossy_label`) with the gate's
error on it — measured where an ok record of that configuration holds one, else the gate's bound.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchbench.costmodel.calibration import Calibration, from_spec, read_calibration
from benchbench.costmodel.grid import config_jobs
from benchbench.costmodel.plan_space import candidates
from benchbench.costmodel.predict import Prediction, predict_job
from benchbench.spec.config import PREDICTED_TOP, ConfigError
from benchbench.spec.hardware import load_hardware
from benchbench.spec.job import Job, make_job
from benchbench.spec.paths import RESULTS, StudyLayout
from benchbench.spec.plan import Plan, lossy_bound, lossy_kinds

MEASURED, PREDICTED = "measured", "predicted"
#: Said wherever measured and predicted throughputs are ranked together.
MIXED_NOTE = (
    "note: this ranking mixes measured and predicted throughput; where the cost model under-predicts step "
    "time (on this project's CPU runs most predictions lie below the measurement: docs/METRICS.md), a "
    "predicted plan can outrank a measured one that is in fact faster; measure it before trusting the order"
)


def calibration_path(study: str, hardware: str, root: str | Path = RESULTS) -> Path:
    """Where ``benchbench calibrate`` writes the calibration of ``hardware`` for ``study``
    (:meth:`StudyLayout.calibration`)."""
    return StudyLayout(study, Path(root)).calibration(hardware)


def calibration_for(
    study: str, hardware: str, path: str | Path | None = None, root: str | Path = "results"
) -> Calibration:
    """The calibration to predict ``hardware`` with (module docstring); :class:`ConfigError`
    naming the file or the missing spec figure when there is none."""
    try:
        if path:
            return read_calibration(Path(path))
        found = calibration_path(study, hardware, root)
        if found.exists():
            try:
                return read_calibration(found)
            except ValueError as e:  # a failed calibration: the specs stand in where they can, said on stderr
                cal = from_spec(hardware, load_hardware(hardware))
                print(f"benchbench: {e}; predicting {hardware} from its specs", file=sys.stderr)
                return cal
        return from_spec(hardware, load_hardware(hardware))
    except ValueError as e:
        raise ConfigError(
            f"no calibration for hardware {hardware!r}: {e}; run `benchbench calibrate --configfile <study> "
            f"--hardware {hardware}` first (it writes {calibration_path(study, hardware, root)})"
        ) from None


@dataclass
class Choice:
    """One ranked plan: its prediction, its definition (``None`` for a preset) and the throughput
    it is ranked by (measured where a record exists)."""

    name: str
    spec: dict[str, Any] | None
    prediction: Prediction
    samples_per_s: float
    label: str  # MEASURED or PREDICTED
    lossy: str = ""  # lossy_label: "" for an exact plan


@dataclass
class Recommendation:
    """The ranked plans that fit, the plans excluded by memory, the others infeasible, and the
    lossy plans that fit but were left out (``allow_lossy`` false)."""

    model: str
    hardware: str
    world_size: int
    global_batch: int
    source: str  # the calibration's
    allow_lossy: bool = False
    ranked: list[Choice] = field(default_factory=list)
    excluded: list[Prediction] = field(default_factory=list)  # memory
    infeasible: list[Prediction] = field(default_factory=list)  # plan rules
    left_out_lossy: list[Prediction] = field(default_factory=list)  # lossy plans that fit, not asked for
    lossy: dict[str, str] = field(default_factory=dict)  # each lossy plan (not infeasible) -> its lossy_label

    @property
    def margin(self) -> float | None:
        """How much faster the best plan is than the runner-up, as a fraction of the runner-up's."""
        if len(self.ranked) < 2:
            return None
        return self.ranked[0].samples_per_s / self.ranked[1].samples_per_s - 1


def study_global_batch(cfg: dict[str, Any], model: str, hardware: str, world_size: int) -> int | None:
    """The study's own global batch at ``world_size`` when the study runs that world size (so its
    records match the plans ranked, and count as measured), else ``None`` (the model's batch_size x
    world size: "Beyond the study")."""
    if world_size not in cfg["world_sizes"]:
        return None
    plain = {**cfg, "strategies": [s for s in cfg["strategies"] if not PREDICTED_TOP.fullmatch(s)] or ["ddp"]}
    return make_job(plain, model, hardware, "ddp", world_size, 0)[0].global_batch


#: The gate's errors a lossy plan's bound applies to (:func:`benchbench.rank.gate.verdict`).
GATE_ERRORS = (
    "verify_loss_rel_err",
    "verify_grad_rel_err",
    "verify_grad_norm_rel_err",
    "verify_param_rel_err",
    "verify_replica_rel_err",
)


@dataclass
class Measured:
    """What the ok records of one configuration say: median samples/s, and for a lossy plan the
    gate's largest error over its records whose verdict is ``lossy`` (``None`` where none has one)."""

    samples_per_s: float | None = None
    gate_error: float | None = None


def _error(summary: dict[str, Any]) -> float | None:
    """The largest of the gate's bounded errors in a record's summary, where its verdict is ``lossy``."""
    if summary.get("verify_verdict") != "lossy":
        return None
    errors = [summary.get(k) for k in GATE_ERRORS]
    errors = [e for e in errors if isinstance(e, int | float)]
    return max(errors) if errors else None


def measured(results: Path | None, job: Job) -> Measured:
    """The ok records under ``results`` of exactly this configuration (model, hardware, strategy and
    its plan, world size, global batch) read as :class:`Measured`."""
    if results is None or not (Path(results) / "raw").exists():
        return Measured()
    pattern = f"{job.model}/{job.hardware}/{job.strategy}/ws{job.world_size}-r*.json"
    found, errors = [], []
    for path in (Path(results) / "raw").glob(pattern):
        try:
            rec = json.loads(path.read_text())
            j, summary = rec.get("job", {}), rec.get("summary", {})
            tput, error = summary.get("samples_per_s"), _error(summary)
        except (OSError, ValueError, AttributeError):  # unreadable (aggregate reports it): not a measurement
            continue
        if (
            rec.get("status") == "ok"
            and j.get("global_batch") == job.global_batch
            and j.get("plan") == job.plan.to_dict()
            and isinstance(tput, int | float)
        ):
            found.append(tput)
            errors += [error] if error is not None else []
    return Measured(statistics.median(found) if found else None, max(errors) if errors else None)


def measured_throughput(results: Path | None, job: Job) -> float | None:
    """Median samples/s of the ok records under ``results`` of exactly this configuration, or ``None``."""
    return measured(results, job).samples_per_s


def lossy_label(plan: Plan, gate_error: float | None = None) -> str:
    """How a plan is labelled wherever a recommendation shows it: ``""`` for an exact plan; for a
    lossy one, ``lossy (<kinds>): gate error <e> measured (bound <b>)`` where a record measured it,
    else ``lossy (<kinds>): gate error <= <b> (the gate's bound; not measured)``
    (:data:`~benchbench.spec.plan.LOSSY_BOUNDS`)."""
    bound = lossy_bound(plan)
    if bound is None:
        return ""
    kinds = "+".join(lossy_kinds(plan))
    if gate_error is not None:
        return f"lossy ({kinds}): gate error {gate_error:.2g} measured (bound {bound.rel:g})"
    return f"lossy ({kinds}): gate error <= {bound.rel:g} (the gate's bound; not measured)"


def recommend(
    cfg: dict[str, Any],
    model: str,
    hardware: str,
    world_size: int,
    cal: Calibration,
    global_batch: int | None = None,
    results: Path | None = None,
    allow_lossy: bool | None = None,
) -> Recommendation:
    """Rank every candidate plan (the study's strategies, the presets, the generated hybrids:
    :func:`~benchbench.costmodel.grid.config_jobs`) of ``model`` on ``hardware`` at
    ``world_size`` ranks and ``global_batch`` (default: the model's batch_size × world size).
    Lossy plans are left out unless ``allow_lossy`` (default: the study's ``allow_lossy`` key)."""
    batch = int(cfg["models"][model].get("batch_size", cfg["batch_size"]))
    gb = global_batch or batch * world_size
    allow = bool(cfg.get("allow_lossy", False) if allow_lossy is None else allow_lossy)
    jobs = config_jobs(cfg, model, hardware, world_size, "all", gb)
    defs = _definitions(cfg, model, hardware, world_size, gb)
    rec = Recommendation(model, hardware, world_size, gb, cal.source, allow)
    for job in jobs:
        pred = predict_job(job, cal)
        if pred.infeasible and pred.fits is not False:
            rec.infeasible.append(pred)
            continue
        seen = measured(results, job)
        if job.plan.lossy:
            rec.lossy[job.strategy] = lossy_label(job.plan, seen.gate_error)
        if pred.infeasible:
            rec.excluded.append(pred)
        elif job.plan.lossy and not allow:
            rec.left_out_lossy.append(pred)
        else:
            label, tput = (MEASURED, seen.samples_per_s) if seen.samples_per_s else (PREDICTED, pred.samples_per_s)
            choice = Choice(job.strategy, defs.get(job.strategy), pred, tput, label, rec.lossy.get(job.strategy, ""))
            rec.ranked.append(choice)
    rec.ranked.sort(key=lambda c: -c.samples_per_s)
    return rec


def _definitions(cfg: dict[str, Any], model: str, hardware: str, world_size: int, gb: int) -> dict[str, Any]:
    defs = {k: v for k, v in candidates(cfg["models"][model], load_hardware(hardware), world_size, gb).items() if v}
    return {**defs, **cfg["strategy_defs"]}


def strategy_yaml(choice: Choice) -> str:
    """The study snippet that runs ``choice``: its name under ``strategies`` and, for a plan that is
    not a preset, its ``strategy_defs`` entry."""
    doc: dict[str, Any] = {"strategies": [choice.name]}
    if choice.spec:
        doc["strategy_defs"] = {choice.name: choice.spec}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None).rstrip()


def _row(i: int, c: Choice) -> str:
    p = c.prediction
    return (
        f"{i:>3}  {c.name:34} {p.dp:>5} {p.tp:>3} {p.pp:>3}  {p.step_time_s * 1e3:10.4g}  {c.samples_per_s:12.5g}  "
        f"{p.memory_bytes / 1e9:9.3g}  {c.label}{' (extrapolated)' if p.extrapolated and c.label == PREDICTED else ''}"
        f"{'; ' + c.lossy if c.lossy else ''}"
    )


def _named(c: Choice) -> str:
    """``name (measured)``, or ``name (predicted; lossy (...): gate error ...)`` for a lossy plan."""
    return f"{c.name} ({c.label}{'; ' + c.lossy if c.lossy else ''})"


def _best_lines(rec: Recommendation) -> list[str]:
    """The best plan, its terms and how much of its predicted step is compute."""
    if not rec.ranked:
        return ["no plan fits: every candidate is excluded by memory or infeasible"]
    best = rec.ranked[0]
    share = best.prediction.compute_s / best.prediction.step_time_s
    return [
        f"best: {_named(best)} {best.samples_per_s:.5g} samples/s; {best.prediction.terms}",
        f"compute is {share:.0%} of its predicted step"
        + (
            " (communication-bound: plans differ by latencies; framework and kernel-launch overheads, "
            "not modelled, may dominate)"
            if share < 0.5
            else ""
        ),
    ]


def _excluded_lines(rec: Recommendation) -> list[str]:
    """The plans excluded by memory, predicted memory against the limit, smallest first."""
    lines = [f"excluded by memory ({len(rec.excluded)}):" + ("" if rec.excluded else " none")]
    return lines + [
        f"  {p.strategy}: {p.memory_bytes / 1e9:.3g} GB predicted > {p.memory_limit_bytes / 1e9:.3g} GB limit"
        + (f" ({rec.lossy[p.strategy]})" if p.strategy in rec.lossy else "")
        for p in sorted(rec.excluded, key=lambda p: p.memory_bytes)
    ]


def lossy_note(rec: Recommendation) -> str:
    """What the ranking did with lossy plans: left out (naming them and how to ask for them), or
    ranked and labelled."""
    if rec.allow_lossy:
        return (
            "lossy plans ranked (allow_lossy): each is labelled lossy with the gate's error on it, measured "
            "where a record of it exists, else the gate's bound (docs/METRICS.md, Tolerances)"
        )
    names = ", ".join(p.strategy for p in rec.left_out_lossy)
    return (
        f"exact plans only: {len(rec.left_out_lossy)} lossy plans that fit left out"
        + (f" ({names})" if names else "")
        + "; --allow-lossy (study key allow_lossy: true) ranks them, labelled"
    )


def format_recommendation(rec: Recommendation, top: int = 10) -> str:
    """The recommendation for people: the ranked table (top ``top``), best, what was done with lossy
    plans, runner-up and margin, the plans excluded by memory (predicted memory vs the limit), the
    winner's YAML; a lossy plan is labelled (:func:`lossy_label`) wherever it is named."""
    exact = "" if rec.allow_lossy else "exact "
    lines = [
        f"benchbench recommend: {rec.model} on {rec.hardware} at {rec.world_size} ranks, global batch "
        f"{rec.global_batch} (calibration: {rec.source}); {len(rec.ranked)} {exact}plans fit, "
        f"{len(rec.excluded)} excluded by memory, {len(rec.infeasible)} infeasible"
        + ("" if rec.allow_lossy else f", {len(rec.left_out_lossy)} lossy left out"),
        f"{'#':>3}  {'plan':34} {'dp':>5} {'tp':>3} {'pp':>3}  {'pred. ms':>10}  {'samples/s':>12}  "
        f"{'pred. GB':>9}  samples/s source",
    ]
    lines += [_row(i + 1, c) for i, c in enumerate(rec.ranked[:top])]
    lines += _best_lines(rec)
    lines.append(lossy_note(rec))
    if {c.label for c in rec.ranked} == {MEASURED, PREDICTED}:
        lines.append(MIXED_NOTE)
    if len(rec.ranked) > 1:
        second = rec.ranked[1]
        lines.append(f"runner-up: {_named(second)} {second.samples_per_s:.5g} samples/s; margin {rec.margin:.1%}")
    lines += _excluded_lines(rec)
    if rec.ranked:
        lines += ["strategy for a study (paste into its config):", strategy_yaml(rec.ranked[0])]
    return "\n".join(lines)
