"""Recommend a plan: every candidate plan of a model on a hardware profile at a world size, ranked
by throughput among those that fit in memory — measured where an ok record of that exact
configuration exists, predicted elsewhere, each labelled — with the runner-up, the margin, the
plans excluded by memory and the winner's ``strategy_defs`` entry to paste into a study.

The calibration of a profile (:func:`calibration_for`): a file given, else
``results/<study>/calibration/<hardware>.json`` when ``benchbench calibrate`` wrote one, else the
profile's specs (:func:`~benchbench.costmodel.calibration.from_spec`), else an error naming the
missing figure.
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


@dataclass
class Recommendation:
    """The ranked plans that fit, the plans excluded by memory, and the others infeasible."""

    model: str
    hardware: str
    world_size: int
    global_batch: int
    source: str  # the calibration's
    ranked: list[Choice] = field(default_factory=list)
    excluded: list[Prediction] = field(default_factory=list)  # memory
    infeasible: list[Prediction] = field(default_factory=list)  # plan rules

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


def measured_throughput(results: Path | None, job: Job) -> float | None:
    """Median samples/s of the ok records under ``results`` of exactly this configuration (model,
    hardware, strategy and its plan, world size, global batch), or ``None``."""
    if results is None or not (Path(results) / "raw").exists():
        return None
    pattern = f"{job.model}/{job.hardware}/{job.strategy}/ws{job.world_size}-r*.json"
    found = []
    for path in (Path(results) / "raw").glob(pattern):
        try:
            rec = json.loads(path.read_text())
            j, tput = rec.get("job", {}), rec.get("summary", {}).get("samples_per_s")
        except (OSError, ValueError, AttributeError):  # unreadable (aggregate reports it): not a measurement
            continue
        if (
            rec.get("status") == "ok"
            and j.get("global_batch") == job.global_batch
            and j.get("plan") == job.plan.to_dict()
            and isinstance(tput, int | float)
        ):
            found.append(tput)
    return statistics.median(found) if found else None


def recommend(
    cfg: dict[str, Any],
    model: str,
    hardware: str,
    world_size: int,
    cal: Calibration,
    global_batch: int | None = None,
    results: Path | None = None,
) -> Recommendation:
    """Rank every candidate plan (the study's strategies, the presets, the generated hybrids:
    :func:`~benchbench.costmodel.grid.config_jobs`) of ``model`` on ``hardware`` at
    ``world_size`` ranks and ``global_batch`` (default: the model's batch_size × world size)."""
    batch = int(cfg["models"][model].get("batch_size", cfg["batch_size"]))
    gb = global_batch or batch * world_size
    jobs = config_jobs(cfg, model, hardware, world_size, "all", gb)
    defs = _definitions(cfg, model, hardware, world_size, gb)
    rec = Recommendation(model, hardware, world_size, gb, cal.source)
    for job in jobs:
        pred = predict_job(job, cal)
        if pred.infeasible and pred.fits is False:
            rec.excluded.append(pred)
        elif pred.infeasible:
            rec.infeasible.append(pred)
        else:
            measured = measured_throughput(results, job)
            label, tput = (MEASURED, measured) if measured else (PREDICTED, pred.samples_per_s)
            rec.ranked.append(Choice(job.strategy, defs.get(job.strategy), pred, tput, label))
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
    )


def _best_lines(rec: Recommendation) -> list[str]:
    """The best plan, its terms and how much of its predicted step is compute."""
    if not rec.ranked:
        return ["no plan fits: every candidate is excluded by memory or infeasible"]
    best = rec.ranked[0]
    share = best.prediction.compute_s / best.prediction.step_time_s
    return [
        f"best: {best.name} ({best.label}) {best.samples_per_s:.5g} samples/s; {best.prediction.terms}",
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
        for p in sorted(rec.excluded, key=lambda p: p.memory_bytes)
    ]


def format_recommendation(rec: Recommendation, top: int = 10) -> str:
    """The recommendation for people: the ranked table (top ``top``), best, runner-up and margin,
    the plans excluded by memory (predicted memory vs the limit), the winner's YAML."""
    lines = [
        f"benchbench recommend: {rec.model} on {rec.hardware} at {rec.world_size} ranks, global batch "
        f"{rec.global_batch} (calibration: {rec.source}); {len(rec.ranked)} plans fit, "
        f"{len(rec.excluded)} excluded by memory, {len(rec.infeasible)} infeasible",
        f"{'#':>3}  {'plan':34} {'dp':>5} {'tp':>3} {'pp':>3}  {'pred. ms':>10}  {'samples/s':>12}  "
        f"{'pred. GB':>9}  samples/s source",
    ]
    lines += [_row(i + 1, c) for i, c in enumerate(rec.ranked[:top])]
    lines += _best_lines(rec)
    if {c.label for c in rec.ranked} == {MEASURED, PREDICTED}:
        lines.append(MIXED_NOTE)
    if len(rec.ranked) > 1:
        second = rec.ranked[1]
        lines.append(
            f"runner-up: {second.name} ({second.label}) {second.samples_per_s:.5g} samples/s; margin {rec.margin:.1%}"
        )
    lines += _excluded_lines(rec)
    if rec.ranked:
        lines += ["strategy for a study (paste into its config):", strategy_yaml(rec.ranked[0])]
    return "\n".join(lines)
