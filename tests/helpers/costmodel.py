"""Cost-model inputs made by hand: calibrations, fixed predictions, and a results folder with the
prediction tables (the report's Prediction section needs one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchbench.costmodel import collectives
from benchbench.costmodel import validate as v
from benchbench.costmodel.calibration import Calibration, CollectiveFit, CollectivePoint, PhasePoint, write_calibration
from benchbench.costmodel.predict import Prediction
from benchbench.results.records import study_records
from benchbench.results.tables import aggregate
from benchbench.spec.config import check_config
from benchbench.spec.job import Job
from benchbench.spec.paths import TABLES, StudyLayout
from tests.helpers.jobs import TINY_GPT
from tests.helpers.records import rec

GPT_SMALL = {"arch": "gpt", "layers": 4, "hidden": 256, "heads": 4, "seq_len": 32, "vocab": 256}
ALPHA, BW = 1e-3, 1e9


def hand_cal(alpha: float = ALPHA, bw: float = BW, overlap: float = 0.0, cpu_count: int = 1024) -> Calibration:
    """A calibration written by hand: every collective α = ``alpha`` s, bus bandwidth ``bw`` B/s at
    2 ranks; each model 10 ms forward + 20 ms backward per 4 samples (+ 1 ms fixed) and 5 ms optimizer."""
    fits = [CollectiveFit(k, 2, alpha, bw) for k in collectives.COLLECTIVES]
    pts = [PhasePoint(b, 0.001 + 0.01 * b / 4, 0.001 + 0.02 * b / 4, 0.005) for b in (4, 8)]
    labels = ("gpt-small", "mlp-8m", "m", "gpt-tiny", "gpt", "llama-tiny")
    return Calibration(
        "cpu-local", "measured", 1, cpu_count, "cpu", fits, [], dict.fromkeys(labels, pts), overlap=overlap
    )


def fake_prediction(
    job: Job, cal: Calibration, step: float = 0.5, state: float = 1000.0, bubble: float | None = None
) -> Prediction:
    """A prediction with fixed figures: the errors then depend on the records alone."""
    return Prediction(
        model=job.model,
        hardware=job.hardware,
        strategy=job.strategy,
        world_size=job.world_size,
        dp=job.dp,
        tp=job.tp,
        pp=job.pp,
        global_batch=job.global_batch,
        source=cal.source,
        extrapolated=False,
        compute_s=step,
        comm_s=0.0,
        exposed_comm_s=0.0,
        bubble_fraction=bubble,
        step_time_s=step,
        samples_per_s=job.global_batch / step,
        model_state_bytes=state,
        activation_bytes=None,
        memory_bytes=state,
        memory_limit_bytes=None,
        fits=None,
        infeasible=None,
        terms=f"compute {step} s",
    )


def validation_records(times: Any = ((1, (1.0,)), (2, (0.4, 0.5, 0.9)))) -> list[dict]:
    """Records of ``(world size, step times of its repeats)``: single at 1 rank, ddp above."""
    out = []
    for ws, reps in times:
        for r, t in enumerate(reps):
            record = rec("ddp" if ws > 1 else "single", ws, t, repeat=r)
            record["summary"]["model_state_bytes"] = 800.0 + r
            out.append(record)
    return out


def measured_calibration() -> Calibration:
    """A measured cpu-local calibration: all_reduce points at 2 ranks, α 10 µs, 1 GB/s for every collective."""
    points = [
        CollectivePoint("all_reduce", 2, s, 1e-5 + s / 1e9, s / (1e-5 + s / 1e9), s / (1e-5 + s / 1e9))
        for s in (1024, 65536, 4 * 2**20)
    ]
    fits = [CollectiveFit(k, 2, 1e-5, 1e9) for k in ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "send")]
    return Calibration(
        hardware="cpu-local",
        source="measured",
        collectives=fits,
        points=points,
        compute_rates={"fp32": 1e11},
        memory_bandwidth=1e10,
    )


def prediction_study(tmp_path: Path, predicted: bool = True, calibration: str | None = "good") -> StudyLayout:
    """A results folder with records, tables, (a calibration) and the prediction tables."""
    layout = StudyLayout("s", tmp_path)
    layout.raw.mkdir(parents=True)
    for i, r in enumerate(validation_records()):
        r = {**r, "job": {**r["job"], "hardware": "cpu-local"}}
        (layout.raw / f"{i}.json").write_text(json.dumps(r))
    aggregate(study_records(layout), {n: layout.table(n) for n in TABLES})
    cal = layout.calibration("cpu-local")
    if calibration == "good":
        write_calibration(measured_calibration(), cal)
    elif calibration == "broken":
        cal.parent.mkdir(parents=True)
        cal.write_text('{"calibration_version": 1, "hardware": "cpu-local", "source": "measured", "oops": 1}')
    if predicted:
        recs = [json.loads(p.read_text()) for p in study_records(layout)]
        cals = {"cpu-local": measured_calibration()}
        table = v.validate(recs, cals, lambda j, c: fake_prediction(j, c, step=1.2 if j.world_size == 1 else 0.5))
        table.to_csv(layout.table("prediction"), index=False)
        v.summarize(table).to_csv(layout.table("prediction_summary"), index=False)
        grid = v.prediction_grid(prediction_config(), cals, world_sizes=(1, 2, 8, 64))[0]
        grid.to_csv(layout.table("predictions"), index=False)
        recommended = v.recommendations(prediction_config(), cals, layout.dir, world_sizes=(8, 64))[0]
        recommended.to_csv(layout.table("recommendations"), index=False)
    return layout


def prediction_config() -> dict[str, Any]:
    """The study behind :func:`prediction_study`: the tiny gpt, single and ddp at 1 and 2 ranks."""
    return check_config(
        {
            "study": "s",
            "models": {"m": dict(TINY_GPT, batch_size=64)},
            "hardware": ["cpu-local"],
            "strategies": ["single", "ddp"],
            "world_sizes": [1, 2],
        }
    )
