"""The cost model against measurements: predicted vs measured step time and model state per record.

    PYTHONPATH=. .venv/bin/python benchmarks/prediction_error.py --calibration CAL.json \\
        results/default results/strategies [--max-world-size 4]

For every ok record under the results folders (``raw/**/*.json``) it predicts the record's job
(:func:`benchbench.costmodel.predict.predict_job`, from the record's own ``job``) with the given
calibration and prints predicted vs measured ``step_time_median_s`` and ``model_state_bytes`` with
the relative error (predicted − measured) / measured, and the bubble where measured; then the
median and worst absolute error per strategy and overall, over the records at world sizes up to
``--max-world-size`` (the issue's target: median step-time error ≤ 15 %, model state ≤ 5 %, world
sizes 1-4). Nothing is fitted here: every figure comes from the calibration and the formulas.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchbench.costmodel.calibration import read_calibration
from benchbench.costmodel.predict import predict_job
from benchbench.spec.job import Job

STEP_TARGET, MEMORY_TARGET = 0.15, 0.05


def rows(folders: list[Path], cal_path: Path) -> list[dict]:
    """One row per ok record: job id, strategy, world size, oversubscribed, predicted and measured
    step time, model state and bubble, and the relative errors."""
    cal = read_calibration(cal_path)
    out = []
    for path in sorted(p for f in folders for p in (Path(f) / "raw").rglob("*.json")):
        rec = json.loads(path.read_text())
        if rec.get("status") != "ok":
            continue
        job, s = Job.from_dict(rec["job"]), rec["summary"]
        pred = predict_job(job, cal)
        out.append(
            {
                "id": f"{job.study}/{job.id}",
                "strategy": job.strategy,
                "world_size": job.world_size,
                "oversubscribed": bool(rec["env"].get("oversubscribed")),
                "extrapolated": pred.extrapolated,
                "step_pred": pred.step_time_s,
                "step_meas": s["step_time_median_s"],
                "step_err": (pred.step_time_s - s["step_time_median_s"]) / s["step_time_median_s"],
                "mem_pred": pred.model_state_bytes,
                "mem_meas": s["model_state_bytes"],
                "mem_err": (pred.model_state_bytes - s["model_state_bytes"]) / s["model_state_bytes"],
                "bubble_pred": pred.bubble_fraction,
                "bubble_meas": s.get("bubble_fraction_measured"),
            }
        )
    return out


def summary(table: list[dict], key: str) -> tuple[float, float, str]:
    """Median and worst absolute error of ``key`` over ``table``, and the worst row's id."""
    errs = [abs(r[key]) for r in table]
    worst = max(table, key=lambda r: abs(r[key]))
    return statistics.median(errs), max(errs), worst["id"]


def _fmt_bubble(r: dict) -> str:
    if r["bubble_meas"] is None:
        return ""
    return f"  bubble {r['bubble_pred']:.2f} vs {r['bubble_meas']:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="results/<study> folders")
    ap.add_argument("--calibration", required=True, type=Path)
    ap.add_argument("--max-world-size", type=int, default=4, help="records in the summary (default 4)")
    args = ap.parse_args(argv)
    table = rows(args.folders, args.calibration)
    print(f"{'record':62} {'pred s':>8} {'meas s':>8} {'err':>7}  {'pred MB':>8} {'meas MB':>8} {'err':>7}")
    for r in table:
        flags = (" oversub" if r["oversubscribed"] else "") + (" extrap" if r["extrapolated"] else "")
        step = f"{r['step_pred']:8.4f} {r['step_meas']:8.4f} {r['step_err']:+7.1%}"
        state = f"{r['mem_pred'] / 1e6:8.2f} {r['mem_meas'] / 1e6:8.2f} {r['mem_err']:+7.1%}"
        print(f"{r['id'][:62]:62} {step}  {state}{flags}{_fmt_bubble(r)}")
    scope = [r for r in table if r["world_size"] <= args.max_world_size]
    if not scope:
        print("no ok record in scope")
        return 1
    print(f"\nper strategy, world sizes <= {args.max_world_size}: median / worst |error| (step time; model state)")
    for strategy in sorted({r["strategy"] for r in scope}):
        sub = [r for r in scope if r["strategy"] == strategy]
        (sm, sw, _), (mm, mw, _) = summary(sub, "step_err"), summary(sub, "mem_err")
        print(f"  {strategy:18} n={len(sub):2}  step {sm:6.1%} / {sw:6.1%}   state {mm:6.1%} / {mw:6.1%}")
    (sm, sw, sid), (mm, mw, mid) = summary(scope, "step_err"), summary(scope, "mem_err")
    print(f"\noverall n={len(scope)}: step time median {sm:.1%}, worst {sw:.1%} ({sid})")
    print(f"overall n={len(scope)}: model state median {mm:.1%}, worst {mw:.1%} ({mid})")
    met = sm <= STEP_TARGET and mm <= MEMORY_TARGET
    verdict = "met" if met else "NOT met"
    print(f"target (median step <= {STEP_TARGET:.0%}, model state <= {MEMORY_TARGET:.0%}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
