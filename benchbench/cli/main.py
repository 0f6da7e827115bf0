"""Command line: ``benchbench run | matrix | calibrate | aggregate | plot | report | compare | path |
predict | recommend | validate | plot-costmodel``.

The commands that read results import their heavy modules when they run (pandas, scipy,
matplotlib, jinja2: 0.3–0.8 s each): ``benchbench run``, which starts every job, loads none of them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from benchbench.cli.costmodel import add_commands as add_costmodel_commands
from benchbench.costmodel.calibrate import CalibrationSpec, check_spec, format_calibration
from benchbench.costmodel.calibration import read_calibration, write_failed_calibration
from benchbench.costmodel.run_calibration import CalibrationFailed, run_calibration
from benchbench.launch.batch import check_batch, run_batch
from benchbench.launch.run_job import run_job
from benchbench.launch.teardown import Interrupted
from benchbench.protocol.record import job_from_json
from benchbench.results.records import read_records
from benchbench.spec.config import DEFAULT_CONFIG, ConfigError, check_config, load_config
from benchbench.spec.job import job_infeasible_reason, make_job
from benchbench.spec.paths import PLOT_FORMATS, PLOTS, PREDICTION_TABLES, TABLES, StudyLayout
from benchbench.study import calibration_spec, expand_runnable


def _job_from_args(args: argparse.Namespace):  # -> tuple[Job, str | None]
    """The job ``run`` should run: a full job given as JSON, or one combination of a study."""

    if args.spec:
        try:
            text = Path(args.spec[1:]).read_text() if args.spec.startswith("@") else args.spec
            job = job_from_json(json.loads(text))
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"--spec: {e}") from None
        return job, job_infeasible_reason(job)
    missing = [f"--{k.replace('_', '-')}" for k in ("model", "strategy", "world_size") if getattr(args, k) is None]
    if missing:
        raise ConfigError(f"run needs {', '.join(missing)} (or --spec)")
    cfg = load_config(args.config)
    if args.model not in cfg["models"]:
        raise ConfigError(f"--model: {args.model!r} is not in the study's models; allowed: {sorted(cfg['models'])}")
    hardware = args.hardware or cfg["hardware"][0]
    try:
        return make_job(cfg, args.model, hardware, args.strategy, args.world_size, args.repeat)
    except KeyError as e:
        raise ConfigError(f"--strategy: {e.args[0]}") from None


def _cmd_run(args: argparse.Namespace) -> int:

    job, reason = _job_from_args(args)
    record, written = run_job(
        job, args.out, reason, args.launcher, timed_alone=not args.timed_shared, retry_of=args.retry_of or None
    )
    s = record["summary"]
    if record["status"] == "ok":
        print(
            f"{job.id}: ok  step {s['step_time_median_s']:.4f} s (median)  {s['samples_per_s']:.1f} samples/s  "
            f"loss {record['loss'][0]:.4f} -> {record['loss'][-1]:.4f}  -> {written}"
        )
        return 0
    print(f"{job.id}: {record['status']}: {(record['error'] or '').splitlines()[0]}  -> {written}", file=sys.stderr)
    return 0 if args.allow_failed else 1


def _cmd_run_batch(args: argparse.Namespace) -> int:

    try:
        text = Path(args.specs[1:]).read_text() if args.specs.startswith("@") else args.specs
        jobs = [job_from_json(j) for j in json.loads(text)]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"--specs: {e}") from None
    if len(jobs) != len(args.out):
        raise ConfigError(f"--specs: {len(jobs)} jobs but {len(args.out)} --out paths")
    try:
        check_batch(jobs)
    except ValueError as e:
        raise ConfigError(f"--specs: {e}") from None
    reasons = [job_infeasible_reason(j) for j in jobs]
    for job, out, reason in zip(jobs, args.out, reasons, strict=True):
        if reason is not None:
            run_job(job, out, reason)  # its infeasible record; the rest launch without it
    runnable = [(j, o) for j, o, r in zip(jobs, args.out, reasons, strict=True) if r is None]
    results = []
    if runnable:
        results = run_batch(
            [j for j, _ in runnable],
            [o for _, o in runnable],
            args.launcher,
            timed_alone=not args.timed_shared,
            retry_of=args.retry_of or None,
        )
    for record, written in results:
        print(f"{record['job']['id']}: {record['status']} (batched) -> {written}")
    failed = any(r is not None for r in reasons) or any(rec["status"] != "ok" for rec, _ in results)
    return 1 if failed and not args.allow_failed else 0


def _add_run_batch(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run-batch", help="run several jobs in one launch of ranks (batched), one record each")
    r.add_argument("--specs", required=True, help="the jobs as a JSON list (records' 'job'), or @FILE")
    r.add_argument("--out", required=True, nargs="+", help="where to write each job's record, in order")
    r.add_argument("--launcher", choices=["auto", "torchrun", "srun"], default="auto", help="as for run")
    r.add_argument("--allow-failed", action="store_true", help="exit 0 when a failed/infeasible record was written")
    r.add_argument("--timed-shared", action="store_true", help="other timed jobs may run beside these (recorded)")
    r.add_argument("--retry-of", default="", help="the workflow's retry token, kept in each record")
    r.set_defaults(func=_cmd_run_batch)


def _cmd_matrix(args: argparse.Namespace) -> int:

    cfg = load_config(args.config)
    jobs, dropped = expand_runnable(cfg, f"study config {args.config or DEFAULT_CONFIG}")
    if args.json:
        print(json.dumps({"jobs": [j.to_dict() for j in jobs], "dropped": [d.to_dict() for d in dropped]}, indent=1))
        return 0
    layout = StudyLayout(cfg["study"])
    print(f"# study {cfg['study']}: {len(jobs)} jobs, {len(dropped)} combinations dropped")
    for j in jobs:
        print(f"{j.id}\tbatch={j.global_batch}\tdp={j.dp} tp={j.tp} pp={j.pp}\t{layout.record(j)}")
    for d in dropped:
        print(f"dropped: {d.label()}: {d.reason}")
    return 0


def _cmd_aggregate(args: argparse.Namespace) -> int:
    from benchbench.results.tables import aggregate

    outputs = {name: getattr(args, f"{name}_csv") for name in TABLES}
    if args.out_dir:
        outputs = {name: path or Path(args.out_dir) / f"{name}.csv" for name, path in outputs.items()}
    if not all(outputs.values()):
        raise ConfigError("aggregate needs --out-dir or all of " + ", ".join(f"--{n}-csv" for n in TABLES))
    dropped = json.loads(Path(args.dropped).read_text()) if args.dropped else []
    frames = aggregate(args.records, outputs, args.scaling, dropped)
    print(frames["scaling"].to_string(index=False) if not frames["scaling"].empty else "no ok runs")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from benchbench.results.figures.study import plot_scaling
    from benchbench.results.tables import read_table

    outputs, index = list(args.out or []), args.index
    if args.out_dir:
        outputs += [Path(args.out_dir) / f"{n}.{f}" for n in PLOTS for f in PLOT_FORMATS]
        index = index or Path(args.out_dir) / "figures.json"
    if not outputs:
        raise ConfigError("plot needs --out FILE... or --out-dir")
    for p in plot_scaling(read_table(args.scaling), outputs, index):
        print(p)
    return 0


def _merged_report(args: argparse.Namespace) -> Path:
    """``report`` with several ``--study-dir``: one page, each folder's own records and figures."""
    from benchbench.results.report import build_merged_report

    options = {"--study-json": args.study_json or None, "--figures": args.figures, "--records": args.records}
    given = [o for o, v in options.items() if v is not None]
    if given:
        raise ConfigError(
            f"report: {', '.join(given)} cannot be used with more than one --study-dir "
            "(a merged report reads each folder's own records and figures)"
        )
    return build_merged_report(args.study_dir, args.out or "report.html", description=args.description)


def _report_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """``build_report``'s inputs: a study folder's (each option given in place of the folder's own),
    or the files named one by one."""
    from benchbench.results.report import study_inputs

    if args.study_dir:
        study_dir = Path(args.study_dir[0])
        found = study_inputs(StudyLayout(study_dir.name, study_dir.parent))
        given = {"records": args.records, "calibrations": args.calibration, "out": args.out, "figures": args.figures}
        return found | {k: v for k, v in given.items() if v}
    if not (args.tables and args.out):
        raise ConfigError("report needs --study-dir, or --tables, --plots and --out")
    return {
        "records": args.records or [],
        "tables": {Path(t).stem: Path(t) for t in args.tables},
        "plots": args.plots or [],
        "out": args.out,
        "figures": args.figures,
        "calibrations": args.calibration or [],
    }


def _cmd_report(args: argparse.Namespace) -> int:
    from benchbench.results.report import build_report

    if args.study_dir and len(args.study_dir) > 1:
        print(_merged_report(args))
        return 0
    print(build_report(**_report_inputs(args), description=args.description, study=args.study_json or None))
    return 0


def _study_arg(text: str | None) -> dict | None:
    """``--study``: a validated study from a study file path or its JSON (the workflow passes JSON)."""

    if not text:
        return None
    if text.lstrip().startswith("{"):
        try:
            study = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"--study: not JSON: {e}; allowed: a study file path or the study as JSON") from None
        return check_config(study, "--study")
    return load_config(text)


def _cmd_validate(args: argparse.Namespace) -> int:
    from benchbench.costmodel.validate import headline, load_calibrations, summarize, validate
    from benchbench.results.tables import write_csv

    study = _study_arg(args.study)  # bad input is refused before anything is written
    if (args.predictions_csv or args.recommendations_csv) and study is None:
        raise ConfigError("validate: --predictions-csv and --recommendations-csv need --study")
    records, _ = read_records(args.records or [])
    cals, notes = load_calibrations(args.calibration or [])
    for note in notes:
        print(f"benchbench: {note}", file=sys.stderr)
    table = validate(records, cals)
    summary = summarize(table)
    write_csv(table, args.out_csv)
    write_csv(summary, args.summary_csv)
    if study is not None and (args.predictions_csv or args.recommendations_csv):
        _write_grid(args, study, cals)
    print(headline(summary))
    return 0


def _write_grid(args: argparse.Namespace, study: dict, cals: dict) -> None:
    """predictions.csv and recommendations.csv of ``validate`` (what cannot be predicted: stderr)."""
    from benchbench.costmodel.validate import prediction_grid, recommendations
    from benchbench.results.tables import write_csv

    for path, (frame, notes) in (
        (args.predictions_csv, prediction_grid(study, cals) if args.predictions_csv else (None, [])),
        (
            args.recommendations_csv,
            recommendations({**study, "allow_lossy": study["allow_lossy"] or args.allow_lossy}, cals, args.results_dir)
            if args.recommendations_csv
            else (None, []),
        ),
    ):
        for note in notes:
            print(f"benchbench: {note}", file=sys.stderr)
        if path:
            write_csv(frame, path)


def _cmd_plot_costmodel(args: argparse.Namespace) -> int:
    from benchbench.costmodel.validate import load_calibrations
    from benchbench.results.figures.costmodel import calibration_points, plot_costmodel
    from benchbench.results.tables import read_table

    cals, notes = load_calibrations(args.calibration or [])
    for note in notes:
        print(f"benchbench: {note}", file=sys.stderr)
    grid = read_table(args.predictions) if args.predictions and Path(args.predictions).is_file() else None
    if grid is None:
        import pandas as pd

        grid = pd.DataFrame()
    for p in plot_costmodel(calibration_points(cals.values()), grid, args.out):
        print(p)
    return 0


def _add_costmodel(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser(
        "validate",
        help="the cost model against the records: prediction.csv, prediction_summary.csv (and predictions.csv)",
        description="For every configuration with ok records: predicted (benchbench.costmodel.predict.predict_job "
        "of the record's job, with its hardware's calibration) vs measured (median over the ok repeats) step "
        "time, samples/s, model-state bytes and bubble, each with its relative error (pred - meas) / meas; the "
        "summary per strategy and overall; with --predictions-csv also the study's grid up to 4,096 ranks.",
    )
    v.add_argument("--records", nargs="*", help="record files (raw/**/*.json)")
    v.add_argument("--calibration", nargs="*", help="calibration JSON files (benchbench calibrate), one per hardware")
    v.add_argument("--out-csv", required=True, help="where to write prediction.csv")
    v.add_argument("--summary-csv", required=True, help="where to write prediction_summary.csv")
    v.add_argument("--predictions-csv", help="where to write predictions.csv (world sizes 1 ... 4,096)")
    v.add_argument("--recommendations-csv", help="where to write recommendations.csv (8, 64, 1,024 ranks)")
    v.add_argument("--results-dir", type=Path, help="results/<study>: recommend uses its ok records as measured")
    v.add_argument("--study", help="the study file, or the validated study as JSON (for the two above)")
    v.add_argument(
        "--allow-lossy",
        action="store_true",
        help="recommendations.csv may recommend lossy plans, labelled (default: the study's allow_lossy)",
    )
    v.set_defaults(func=_cmd_validate)

    pc = sub.add_parser("plot-costmodel", help="calibrations + predictions.csv -> busbw and predicted plots")
    pc.add_argument("--calibration", nargs="*", help="calibration JSON files")
    pc.add_argument("--predictions", help="predictions.csv (benchbench validate --predictions-csv)")
    pc.add_argument("--out", nargs="+", required=True, help="plot files: busbw.{svg,png}, predicted.{svg,png}")
    pc.set_defaults(func=_cmd_plot_costmodel)


def _cmd_compare(args: argparse.Namespace) -> int:
    from benchbench.results.compare import compare, exit_status, format_table, load_stats, summary_line
    from benchbench.results.tables import write_csv

    (base, base_from), (new, new_from) = load_stats(args.base), load_stats(args.new)
    table = compare(base, new, threshold=args.threshold, alpha=args.alpha)
    print(f"BASE: {base_from}\nNEW:  {new_from}\n")
    print(format_table(table))
    print("\n" + summary_line(table, args.threshold, args.alpha))
    if args.csv:
        write_csv(table, args.csv)
    return exit_status(table, allow_missing=args.allow_missing)


def _calibration_spec(args: argparse.Namespace) -> tuple[CalibrationSpec, Path]:
    """The calibration spec and output path ``calibrate`` was asked for: ``--spec`` (JSON, @FILE or
    a file) with ``--out``, or a study (``--configfile``, default the default study) and ``--hardware``."""

    if args.spec:
        if args.configfile or args.hardware or not args.out:
            raise ConfigError("calibrate --spec takes --out and neither --configfile nor --hardware")
        text = args.spec
        if text.startswith("@") or not text.lstrip().startswith("{"):
            try:
                text = Path(text.removeprefix("@")).read_text()
            except OSError as e:
                raise ConfigError(f"--spec: {e}") from None
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"--spec: not JSON: {e}") from None
        try:
            return CalibrationSpec.from_dict(doc), Path(args.out)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    cfg = load_config(args.configfile)
    hardware = args.hardware or cfg["hardware"][0]
    try:
        spec = calibration_spec(cfg, hardware)
    except ValueError as e:
        raise ConfigError(f"--hardware: {e}") from None
    return spec, Path(args.out) if args.out else StudyLayout(cfg["study"]).calibration(hardware)


def _calibration_failed(args: argparse.Namespace, spec: CalibrationSpec, out: Path, reason: str) -> int:
    """Exit status of a calibration whose ranks failed: 1; with ``--allow-failed`` (the workflow)
    0, after writing the failure's record at ``out`` so that predict and the report still run —
    unless ``out`` holds a usable calibration, which a failed run does not overwrite (exit 1)."""

    if not args.allow_failed:
        return 1
    try:
        read_calibration(out)
    except ValueError:  # none there, or not usable: record the failure
        write_failed_calibration(out, spec.hardware, reason, args.retry_of)
        print(f"benchbench calibrate: failure recorded -> {out}", file=sys.stderr)
        return 0
    print(f"benchbench calibrate: kept the usable calibration {out}", file=sys.stderr)
    return 1


def _cmd_calibrate(args: argparse.Namespace) -> int:

    spec, out = _calibration_spec(args)
    try:
        check_spec(spec)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        cal = run_calibration(spec, out, args.launcher, retry_of=args.retry_of)
    except CalibrationFailed as e:
        print(f"benchbench calibrate: {e}", file=sys.stderr)
        return _calibration_failed(args, spec, out, str(e))
    except Interrupted as e:  # SIGTERM/SIGINT/SIGHUP: the ranks are killed, nothing is written
        print(f"benchbench calibrate: interrupted by signal {e.signum}, no calibration written", file=sys.stderr)
        return 128 + e.signum
    print(format_calibration(cal))
    print(f"-> {out}")
    return 0


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "calibrate",
        help="measure collectives, compute and overlap on the ranks; write the calibration JSON",
        description="Either --spec (what the workflow passes) and --out, or a study (--configfile, default "
        "the default study) and --hardware (default the study's first); the output defaults to "
        "results/<study>/calibration/<hardware>.json. Exit 1, with no file written, when the ranks fail "
        "or time out; 2 for a bad spec or study.",
    )
    c.add_argument("--spec", help="the calibration spec as JSON (calibration_spec's dict), @FILE or FILE")
    c.add_argument("--configfile", help="study config (default: config/config.yaml)")
    c.add_argument("--hardware", help="hardware profile (default: the study's first)")
    c.add_argument("--out", help="where to write the calibration (required with --spec)")
    c.add_argument(
        "--launcher",
        choices=["auto", "torchrun", "srun"],
        default="auto",
        help="how to start ranks (auto: srun inside a Slurm allocation, else torchrun)",
    )
    c.add_argument(
        "--allow-failed",
        action="store_true",
        help="when the ranks fail or time out, write the failure's record at --out (status: failed, "
        "reason; predict and the report say the calibration is not usable) and exit 0",
    )
    c.add_argument("--retry-of", default="", help=argparse.SUPPRESS)  # the workflow's retry token, kept in the file
    c.set_defaults(func=_cmd_calibrate)


def _cmd_path(args: argparse.Namespace) -> int:

    layout = StudyLayout(load_config(args.config)["study"], Path(args.results))
    print(layout.report if args.what == "report" else layout.dir)
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run one job and write its record")
    r.add_argument("--model", help="a model name of the study config")
    r.add_argument("--strategy", help="a strategy preset or one of the study's strategy_defs")
    r.add_argument("--world-size", type=int, help="number of ranks")
    r.add_argument("--config", help="study config (default: config/config.yaml)")
    r.add_argument("--hardware", help="hardware profile (default: the study's first)")
    r.add_argument("--repeat", type=int, default=0, help="repeat index (default 0)")
    r.add_argument("--spec", help="a whole job as JSON (a record's 'job'; what the workflow passes), or @FILE")
    r.add_argument("--out", required=True, help="where to write the record")
    r.add_argument(
        "--launcher",
        choices=["auto", "torchrun", "srun"],
        default="auto",
        help="how to start ranks (auto: srun inside a Slurm allocation, else torchrun)",
    )
    r.add_argument("--allow-failed", action="store_true", help="exit 0 when a failed/infeasible record was written")
    r.add_argument("--timed-shared", action="store_true", help="other timed jobs may run beside this one (recorded)")
    r.add_argument(
        "--retry-of", default="", help="creation time of the failed record this run retries (the workflow sets it)"
    )
    r.set_defaults(func=_cmd_run)


def _add_tables_and_plots(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("aggregate", help="records -> " + ", ".join(f"{n}.csv" for n in TABLES))
    a.add_argument("--records", nargs="+", required=True)
    a.add_argument("--out-dir", help="write <out-dir>/{" + ",".join(TABLES) + "}.csv")
    for name in TABLES:
        a.add_argument(f"--{name}-csv", help=f"where to write {name}.csv (instead of --out-dir)")
    a.add_argument("--scaling", choices=["strong", "weak"], default="strong")
    a.add_argument("--dropped", help="JSON list of dropped combinations")
    a.set_defaults(func=_cmd_aggregate)

    pl = sub.add_parser("plot", help="scaling.csv -> plots")
    pl.add_argument("--scaling", required=True)
    pl.add_argument("--out", nargs="+", help="plot files to draw, <plot>.<format> (e.g. throughput.svg)")
    pl.add_argument("--out-dir", help="draw every plot in every format (and figures.json) into this folder")
    pl.add_argument("--index", help="write figures.json here: each figure's caption and whether it has data")
    pl.set_defaults(func=_cmd_plot)

    rp = sub.add_parser("report", help="tables + plots + records -> report/index.html")
    rp.add_argument(
        "--study-dir",
        action="append",
        help="results/<study>: records, tables and plots where the layout puts them; "
        "repeat it to merge several folders into one page (--out, default report.html)",
    )
    rp.add_argument("--records", nargs="*")
    rp.add_argument(
        "--tables",
        nargs="+",
        help=" ".join(f"{n}.csv" for n in TABLES + PREDICTION_TABLES)
        + " (instead of --study-dir; the prediction tables may be left out)",
    )
    rp.add_argument("--plots", nargs="*", help="plot files; SVGs are inlined")
    rp.add_argument("--out", help="the report file (default: the layout's report/index.html)")
    rp.add_argument("--description", default="")
    rp.add_argument("--study-json", default="", help="the validated study, as JSON: shown under Provenance")
    rp.add_argument("--figures", help="plots/figures.json: show the figures with data, captioned")
    rp.add_argument("--calibration", nargs="*", help="calibration JSON files (benchbench calibrate): Prediction")
    rp.set_defaults(func=_cmd_report)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "compare",
        help="throughput of NEW against BASE per configuration (Welch t-test); exit 1 when any is slower",
        description="BASE and NEW: a results/<study> folder (its records, else tables/runs.csv, else "
        "tables/scaling.csv) or a runs.csv file. Exit status: 0 no configuration slower, 1 some "
        "configuration significantly slower beyond the threshold or with ok runs in BASE and none in NEW "
        "(see --allow-missing), 2 bad input (including a record file that cannot be read).",
    )
    c.add_argument("base", help="results/<study> folder or runs.csv of the reference run")
    c.add_argument("new", help="results/<study> folder or runs.csv of the run to judge")
    c.add_argument("--threshold", type=float, default=0.03, help="smallest relative change that counts (0.03)")
    c.add_argument("--alpha", type=float, default=0.05, help="significance level of the Welch t-test (0.05)")
    c.add_argument("--csv", help="also write the comparison table to this CSV file")
    c.add_argument(
        "--allow-missing",
        action="store_true",
        help="a configuration with ok runs in BASE and none in NEW (failed or not run) does not fail the comparison",
    )
    c.set_defaults(func=_cmd_compare)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchbench", description="Benchmark parallel training strategies.")
    sub = p.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_run_batch(sub)

    m = sub.add_parser("matrix", help="print the jobs a study expands to, and what it drops")
    m.add_argument("--config", help="study config (default: config/config.yaml)")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(func=_cmd_matrix)
    _add_calibrate(sub)

    _add_tables_and_plots(sub)
    _add_compare(sub)
    _add_costmodel(sub)

    add_costmodel_commands(sub)

    pa = sub.add_parser("path", help="print where a study's outputs go (results layout)")
    pa.add_argument("what", choices=["report", "dir"])
    pa.add_argument("--config", help="study config (default: config/config.yaml)")
    pa.add_argument("--results", default="results", help="results root (default: results)")
    pa.set_defaults(func=_cmd_path)
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
