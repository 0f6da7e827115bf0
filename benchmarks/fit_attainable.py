"""Fit one attainable fraction of a hardware profile on named published rows, and show the rest.

    PYTHONPATH=. .venv/bin/python benchmarks/fit_attainable.py --hardware h100-sxm-96gb \\
        --fraction gemm --rows tt-8b-8gpu-fsdp

The cost model's roofline from spec (benchbench/costmodel/roofline.py) times GEMMs at the profile's
``attainable.gemm`` share of peak (likewise ``attention``, ``hbm``). Where a part's sustained rate
is not published (torchtitan's 500 W H100s), the fraction can be fitted instead — on the rows
named here, and only there: the fraction is found by bisection so that the median of
log(predicted / published) tokens/s per GPU over the named rows is 0; then every published row of
that hardware with a benchbench plan (config/published/, as benchmarks/published.py makes its job)
is printed with its error, marked ``fitting`` or ``held-out``, and the median and worst |error|
of the held-out rows. Nothing is written: the fraction goes into the profile by hand, with its
source naming the rows (and the rows' ``subset`` becomes ``fitting``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import replace

from benchbench.costmodel.calibration import Calibration, from_spec
from benchbench.costmodel.predict import predict_job
from benchbench.spec.hardware import load_hardware
from benchbench.spec.published import PublishedRow, load_all, row_job
from benchmarks.published import published_environment


def tokens_per_gpu(row: PublishedRow, cal: Calibration, stand_in: bool) -> float | None:
    """Predicted tokens/s per GPU of ``row``'s plan (or stand-in); ``None`` without one."""
    made = row_job(row, stand_in)
    if made is None or made[1] is not None or made[0].seq_len is None:
        return None
    pred = predict_job(made[0], cal)
    return (
        None
        if pred.infeasible and not pred.infeasible.startswith("memory")
        else pred.samples_per_s * made[0].seq_len / row.world_size
    )


def predictions(rows: list[PublishedRow], cal: Calibration) -> list[tuple[str, float, float]]:
    """(label, published, predicted) tokens/s per GPU for every row with a plan or a stand-in."""
    out = []
    for row in rows:
        pub = row.published.get("tokens_per_s_per_gpu")
        for stand_in in (False, True) if "stand_in" in (row.plan or {}) else (False,):
            pred = tokens_per_gpu(row, cal, stand_in) if pub else None
            if pred:
                out.append((f"{row.id}{' stand-in' if stand_in else ''}", float(pub), pred))
                break
    return out


def fit(rows: list[PublishedRow], base: Calibration, key: str) -> float:
    """The fraction in (0, 1] whose median log error over ``rows`` is 0 (bisection; throughput
    rises with the fraction)."""

    def median_log_error(value: float) -> float:
        cal = replace(base, attainable={**base.attainable, key: value})
        return statistics.median(math.log(pred / pub) for _, pub, pred in predictions(rows, cal))

    lo, hi = 1e-3, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if median_log_error(mid) < 0 else (lo, mid)
    return (lo + hi) / 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hardware", required=True)
    ap.add_argument("--fraction", choices=("gemm", "attention", "hbm"), default="gemm")
    ap.add_argument("--rows", required=True, help="comma-separated ids of the rows to fit on")
    args = ap.parse_args(argv)
    with published_environment():  # float8 rows predicted as benchmarks/published.py does
        return run(args)


def run(args: argparse.Namespace) -> int:
    """Fit and print (:func:`main`)."""
    rows = [r for r in load_all() if r.hardware == args.hardware and r.run]
    names = args.rows.split(",")
    fitting = [r for r in rows if r.id in names]
    if len(fitting) != len(names):
        sys.exit(f"rows not found on {args.hardware}: {sorted(set(names) - {r.id for r in fitting})}")
    base = from_spec(args.hardware, load_hardware(args.hardware))
    value = fit(fitting, base, args.fraction)
    print(
        f"{args.hardware}: attainable.{args.fraction} fitted on {', '.join(names)}: {value:.3f} "
        f"(cited: {base.attainable.get(args.fraction)})"
    )
    cal = replace(base, attainable={**base.attainable, args.fraction: value})
    held = []
    for label, pub, pred in predictions(rows, cal):
        subset = "fitting" if label in names else "held-out"
        err = pred / pub - 1
        held += [abs(err)] if subset == "held-out" else []
        print(f"  {label:42s} published {pub:8,.0f}  predicted {pred:8,.0f}  {err:+7.1%}  {subset}")
    if held:
        print(f"held-out (n = {len(held)}): median |error| {statistics.median(held):.1%}, worst {max(held):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
