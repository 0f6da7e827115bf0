"""Saved-activation bytes, measured on real ranks against the cost model's estimates, for every
plan that runs on this machine's CPUs.

    PYTHONPATH=. .venv/bin/python benchmarks/activation_memory.py [--arch gpt llama] [--dtype fp32 bf16]
        [--plans single ddp ...] [--json out.json]

Each case is one job run through the real launcher (gloo ranks, 1 warm-up and 1 timed step):
``activation_bytes`` (saved over the step, every micro-batch) and ``activation_peak_bytes`` (held
at once) are the max over ranks (benchbench/rank/measure/memory.py); beside them the estimates of
:mod:`benchbench.costmodel.memory`, computed now. The models: the 4-layer test gpt (hidden 32, 4
heads, seq 16, vocab 64) and the tiny llama preset; global batch 8. ``--plans pp-zbv pp-dualpipev``
runs the schedules whose peak is estimated as an upper bound (all m micro-batches).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from benchbench.costmodel import memory as estimates
from benchbench.launch.run_job import run_job
from benchbench.models.presets import PRESETS
from benchbench.spec.job import Job
from tests.helpers.jobs import TINY_GPT, make_test_job

MODELS = {
    "gpt": dict(TINY_GPT, layers=4, heads=4),
    "llama": {"arch": "llama", **PRESETS["llama"]["tiny"]},
}
#: name -> (strategy, world size, plan changes)
PLANS = {
    "single": ("single", 1, {}),
    "ddp": ("ddp", 2, {}),
    "fsdp": ("fsdp", 2, {}),
    "tp": ("tp", 2, {}),
    "tp-sp": ("tp-sp", 2, {}),
    "tp+ac": ("tp", 2, {"activation_checkpoint": "full"}),
    "tp-sp+ac": ("tp-sp", 2, {"activation_checkpoint": "full"}),
    "ddp-accum": ("ddp-accum", 2, {}),
    "pp-gpipe": ("pp-gpipe", 2, {}),
    "pp-1f1b": ("pp-1f1b", 2, {}),
    "pp-interleaved": ("pp-interleaved", 2, {}),
    "pp-zbv": ("pp-zbv", 2, {}),  # split backward: the peak estimate is an upper bound
    "pp-dualpipev": ("pp-dualpipev", 2, {}),
}


def case_job(arch: str, dtype: str, plan: str) -> Job:
    """The job of one case."""
    strategy, ws, changes = PLANS[plan]
    job = make_test_job(strategy, ws, model_cfg=dict(MODELS[arch]), warmup_steps=1, steps=1, dtype=dtype)
    job = job.replace(seq_len=int(MODELS[arch]["seq_len"]), timeout_s=300.0)
    return job.replace(plan=replace(job.plan, **changes)) if changes else job


def run_case(arch: str, dtype: str, plan: str, tmp: Path) -> dict:
    """Measured and estimated bytes of one case."""
    job = case_job(arch, dtype, plan)
    rec, _ = run_job(job, tmp / f"{arch}-{dtype}-{plan}.json", None)
    if rec["status"] != "ok":
        return {"arch": arch, "dtype": dtype, "plan": plan, "error": str(rec["error"])[:300]}
    s = rec["summary"]
    return {
        "arch": arch,
        "dtype": dtype,
        "plan": plan,
        "total": s["activation_bytes"],
        "total_est": estimates.activation_estimate(job),
        "peak": s.get("activation_peak_bytes"),
        "peak_est": estimates.activation_peak_estimate(job),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=list(MODELS))
    ap.add_argument("--dtype", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--plans", nargs="+", default=[p for p in PLANS if p not in ("pp-zbv", "pp-dualpipev")])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    print("arch   dtype plan            total      total_est  peak       peak_est")
    with tempfile.TemporaryDirectory() as d:
        for arch in args.arch:
            for dtype in args.dtype:
                for plan in args.plans:
                    r = run_case(arch, dtype, plan, Path(d))
                    rows.append(r)
                    if "error" in r:
                        print(f"{arch:6} {dtype:5} {plan:15} error: {r['error']}", flush=True)
                        continue
                    keys = ("total", "total_est", "peak", "peak_est")
                    cells = " ".join(f"{'' if r[k] is None else int(r[k]):>10}" for k in keys)
                    flag = "" if r["total"] == r["total_est"] and r["peak"] == r["peak_est"] else "  ≠"
                    print(f"{arch:6} {dtype:5} {plan:15} {cells}{flag}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    sys.exit(0)


if __name__ == "__main__":
    main()
