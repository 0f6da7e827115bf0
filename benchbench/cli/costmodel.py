"""The cost model's commands: ``benchbench predict`` and ``benchbench recommend`` (registered by
:func:`add_commands` in :mod:`benchbench.cli.main`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchbench.costmodel.calibration import read_calibration
from benchbench.costmodel.grid import predict_configs
from benchbench.costmodel.recommend import calibration_for, format_recommendation, recommend, study_global_batch
from benchbench.spec.config import ConfigError, check_config, load_config
from benchbench.spec.hardware import hardware_names


def _study(args: argparse.Namespace) -> dict[str, Any]:
    """The study: ``--study-json`` (JSON, or @FILE), else ``--configfile`` (default config/config.yaml)."""
    if getattr(args, "study_json", None):
        text = Path(args.study_json[1:]).read_text() if args.study_json.startswith("@") else args.study_json
        try:
            return check_config(json.loads(text), "--study-json")
        except ValueError as e:
            raise ConfigError(f"--study-json: {e}") from None
    return load_config(args.configfile)


def _world_sizes(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--world-sizes: {text!r} is not a comma-separated list of integers") from None
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--world-sizes: {text!r}; allowed: integers >= 1, e.g. 1,2,4,8")
    return sizes


def _calibrations(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    """hardware -> calibration: the files given (each names its hardware), then each hardware asked
    for (the study's; ``all``: every shipped profile) from results/<study>/calibration or its specs;
    a profile that has neither is skipped with a note on stderr (an error when none is left)."""
    cals = {}
    for path in args.calibration or []:
        try:
            cal = read_calibration(Path(path))
        except ValueError as e:
            raise ConfigError(f"--calibration: {e}") from None
        cals[cal.hardware] = cal
    wanted = args.hardware or ([] if cals else cfg["hardware"])
    wanted = hardware_names() if wanted == ["all"] else wanted
    for hw in wanted:
        if hw not in cals:
            try:
                cals[hw] = calibration_for(cfg["study"], hw, root=args.results)
            except ConfigError as e:
                print(f"benchbench predict: skipping {hw}: {e}", file=sys.stderr)
    if not cals:
        raise ConfigError("predict: no hardware with a calibration or specs; give --calibration or --hardware")
    return cals


COLUMNS = (
    "model",
    "hardware",
    "strategy",
    "world_size",
    "dp",
    "tp",
    "pp",
    "global_batch",
    "step_time_s",
    "samples_per_s",
    "memory_bytes",
    "bubble_fraction",
    "source",
    "extrapolated",
    "infeasible",
)


def cmd_predict(args: argparse.Namespace) -> int:
    """``benchbench predict``: the predicted grid of a study, as a table (and ``--csv``)."""
    cfg, sizes = _study(args), _world_sizes(args.world_sizes)
    preds = predict_configs(cfg, _calibrations(args, cfg), sizes, plans=args.plans)
    rows = [p.to_dict() for p in preds]
    if not rows:  # a study whose only strategies are predicted-top-K entries names no plan of its own
        raise ConfigError(
            f"predict: --plans study: the study's strategies {cfg['strategies']} name no plan to predict "
            "(predicted-top-K is chosen by the cost model); allowed: --plans all, or a study with other strategies"
        )
    if args.csv:  # atomically: an interrupted predict leaves the previous file whole
        import pandas as pd

        from benchbench.results.tables import write_csv

        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        write_csv(pd.DataFrame(rows, columns=list(rows[0])), args.csv)
    print("\t".join(COLUMNS))
    for r in rows:
        print("\t".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in COLUMNS))
    if args.csv:
        print(f"# {len(rows)} predictions -> {args.csv}", file=sys.stderr)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    """``benchbench recommend``: the ranked plans of one model × hardware × world size; exit 1 when none fits."""
    cfg = load_config(args.configfile)
    if args.model not in cfg["models"]:
        raise ConfigError(f"--model: {args.model!r} is not in the study's models; allowed: {sorted(cfg['models'])}")
    if args.world_size < 1 or (args.global_batch is not None and args.global_batch < 1) or args.top < 1:
        raise ConfigError(
            f"--world-size {args.world_size}, --global-batch {args.global_batch}, --top {args.top}: "
            "allowed: integers >= 1"
        )
    cal = calibration_for(cfg["study"], args.hardware, args.calibration, args.results_root)
    results = Path(args.results) if args.results else Path(args.results_root) / cfg["study"]
    gb = args.global_batch or study_global_batch(cfg, args.model, args.hardware, args.world_size)
    allow = True if args.allow_lossy else None  # None: the study's allow_lossy key
    rec = recommend(cfg, args.model, args.hardware, args.world_size, cal, gb, results, allow)
    print(format_recommendation(rec, args.top))
    return 0 if rec.ranked else 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``predict`` and ``recommend``."""
    p = sub.add_parser("predict", help="predict step time, throughput, memory and bubble of a study's configurations")
    p.add_argument("--configfile", help="study config (default: config/config.yaml)")
    p.add_argument("--study-json", help="the validated study as JSON, or @FILE (instead of --configfile)")
    p.add_argument("--hardware", nargs="+", help=f"profiles (default: the study's; 'all': {hardware_names()})")
    p.add_argument(
        "--world-sizes",
        help="comma-separated, e.g. 1,2,8,64,1024 (default: the study's); beyond "
        "the study's the global batch is the model's batch_size x world size",
    )
    p.add_argument("--calibration", nargs="+", help="calibration files (each names its hardware)")
    p.add_argument(
        "--plans",
        choices=["study", "all"],
        default="study",
        help="the study's strategies, or also every preset and generated hybrid",
    )
    p.add_argument("--results", default="results", help="results root holding <study>/calibration (default: results)")
    p.add_argument("--csv", help="also write every Prediction column to this CSV file")
    p.set_defaults(func=cmd_predict)
    _add_recommend(sub)


def _add_recommend(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("recommend", help="the best plan of a model on a hardware profile at a world size")
    r.add_argument("--model", required=True, help="a model of the study")
    r.add_argument("--hardware", required=True, help=f"a hardware profile: {hardware_names()}")
    r.add_argument("--world-size", type=int, required=True)
    r.add_argument("--configfile", help="study config (default: config/config.yaml)")
    r.add_argument(
        "--global-batch",
        type=int,
        help="samples per step (default: the study's at its own world sizes, else the model's batch_size x world size)",
    )
    r.add_argument("--results", help="records to take measured throughput from (default: results/<study>)")
    r.add_argument("--results-root", default="results", help=argparse.SUPPRESS)
    r.add_argument("--calibration", help="calibration file (default: results/<study>/calibration/<H>.json, else specs)")
    r.add_argument("--top", type=int, default=10, help="plans to list (default 10)")
    r.add_argument(
        "--allow-lossy",
        action="store_true",
        help="rank lossy plans too (gradient compression, float8), each labelled with the gate's error on it, "
        "measured or bounded (default: the study's allow_lossy, false: exact plans only)",
    )
    r.set_defaults(func=cmd_recommend)
