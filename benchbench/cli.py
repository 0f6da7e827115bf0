"""Command line: ``benchbench run | matrix | aggregate | plot | report``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from benchbench.config import ConfigError, load_config


def _cmd_run(args: argparse.Namespace) -> int:
    from benchbench.launch import run_job
    from benchbench.study import make_spec

    if args.spec:
        job = json.loads(Path(args.spec[1:]).read_text() if args.spec.startswith("@") else args.spec)
        from benchbench.strategies import Plan, infeasible_reason

        reason = infeasible_reason(
            Plan.from_dict(job["plan"]), job["model_cfg"], job["world_size"], job["global_batch"]
        )
    else:
        missing = [f"--{k.replace('_', '-')}" for k in ("model", "strategy", "world_size") if getattr(args, k) is None]
        if missing:
            raise ConfigError(f"run needs {', '.join(missing)} (or --spec)")
        cfg = load_config(args.config)
        if args.model not in cfg["models"]:
            raise ConfigError(f"--model: {args.model!r} is not in the study's models; allowed: {sorted(cfg['models'])}")
        hardware = args.hardware or cfg["hardware"][0]
        try:
            job, reason = make_spec(cfg, args.model, hardware, args.strategy, args.world_size, args.repeat)
        except KeyError as e:
            raise ConfigError(f"--strategy: {e.args[0]}") from None
    record, written = run_job(job, args.out, reason, args.launcher)
    s = record["summary"]
    if record["status"] == "ok":
        print(
            f"{job['id']}: ok  step {s['step_time_median_s']:.4f} s (median)  {s['samples_per_s']:.1f} samples/s  "
            f"loss {record['loss'][0]:.4f} -> {record['loss'][-1]:.4f}  -> {written}"
        )
        return 0
    print(f"{job['id']}: {record['status']}: {(record['error'] or '').splitlines()[0]}  -> {written}", file=sys.stderr)
    return 0 if args.allow_failed else 1


def _cmd_matrix(args: argparse.Namespace) -> int:
    from benchbench.study import expand, record_path

    cfg = load_config(args.config)
    jobs, dropped = expand(cfg)
    if args.json:
        print(json.dumps({"jobs": jobs, "dropped": [d.__dict__ for d in dropped]}, indent=1))
        return 0
    print(f"# study {cfg['study']}: {len(jobs)} jobs, {len(dropped)} combinations dropped")
    for j in jobs:
        print(f"{j['id']}\tbatch={j['global_batch']}\tdp={j['dp']} tp={j['tp']} pp={j['pp']}\t{record_path(j)}")
    for d in dropped:
        print(f"dropped: {d.label()}: {d.reason}")
    return 0


def _cmd_aggregate(args: argparse.Namespace) -> int:
    from benchbench.analysis import aggregate

    dropped = json.loads(Path(args.dropped).read_text()) if args.dropped else []
    frames = aggregate(args.records, args.out_dir, args.scaling, dropped)
    print(frames["scaling"].to_string(index=False) if not frames["scaling"].empty else "no ok runs")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    import pandas as pd

    from benchbench.plots import plot_scaling

    for p in plot_scaling(pd.read_csv(args.scaling), args.out_dir):
        print(p)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from benchbench.report import build_report

    print(build_report(args.study_dir, args.records or None, args.description))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchbench", description="Benchmark parallel training strategies.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run one job and write its record")
    r.add_argument("--model", help="a model name of the study config")
    r.add_argument("--strategy", help="a strategy preset or one of the study's strategy_defs")
    r.add_argument("--world-size", type=int, help="number of ranks")
    r.add_argument("--config", help="study config (default: config/config.yaml)")
    r.add_argument("--hardware", help="hardware profile (default: the study's first)")
    r.add_argument("--repeat", type=int, default=0, help="repeat index (default 0)")
    r.add_argument("--spec", help="a full job spec as JSON, or @FILE (what the workflow passes)")
    r.add_argument("--out", required=True, help="where to write the record")
    r.add_argument(
        "--launcher",
        choices=["auto", "torchrun", "srun"],
        default="auto",
        help="how to start ranks (auto: srun inside a Slurm allocation, else torchrun)",
    )
    r.add_argument("--allow-failed", action="store_true", help="exit 0 when a failed/infeasible record was written")
    r.set_defaults(func=_cmd_run)

    m = sub.add_parser("matrix", help="print the jobs a study expands to, and what it drops")
    m.add_argument("--config", help="study config (default: config/config.yaml)")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(func=_cmd_matrix)

    a = sub.add_parser("aggregate", help="records -> runs.csv, scaling.csv, dropped.csv")
    a.add_argument("--records", nargs="+", required=True)
    a.add_argument("--out-dir", required=True)
    a.add_argument("--scaling", choices=["strong", "weak"], default="strong")
    a.add_argument("--dropped", help="JSON list of dropped combinations")
    a.set_defaults(func=_cmd_aggregate)

    pl = sub.add_parser("plot", help="scaling.csv -> plots")
    pl.add_argument("--scaling", required=True)
    pl.add_argument("--out-dir", required=True)
    pl.set_defaults(func=_cmd_plot)

    rp = sub.add_parser("report", help="tables + plots + records -> report/index.html")
    rp.add_argument("--study-dir", required=True)
    rp.add_argument("--records", nargs="*")
    rp.add_argument("--description", default="")
    rp.set_defaults(func=_cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"benchbench: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `benchbench matrix | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
