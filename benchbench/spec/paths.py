"""The results layout, declared once: where each output of a study lives.

::

    results/<study>/raw/<model>/<hardware>/<strategy>/ws<N>-r<k>.json   one record per job
    results/<study>/logs/bench/<model>/<hardware>/<strategy>/ws<N>-r<k>.log
    results/<study>/logs/<rule>.log                                     aggregate, plot, report
    results/<study>/dropped.json                                        combinations not run
    results/<study>/tables/{runs,scaling,failures,rejected,dropped}.csv
    results/<study>/plots/{throughput,efficiency,best,breakdown,memory,bubble,compression,pareto}.{svg,png}
    results/<study>/plots/figures.json                                  which figures have data, captions
    results/<study>/calibration/<hardware>.json                          benchbench calibrate
    results/<study>/tables/{prediction,prediction_summary,predictions,recommendations}.csv  cost model
    results/<study>/plots/{busbw,predicted}.{svg,png}                     calibration sweep, predicted scaling
    results/<study>/report/index.html

The Snakefile (``workflow/rules/common.smk``), the CLI, the report and the Makefile (through
``benchbench path``) all take paths from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchbench.spec.job import Job

RESULTS = "results"
#: A job's record and log, relative to the results root; the bench rule's wildcards are these names.
RECORD_PATTERN = "{study}/raw/{model}/{hardware}/{strategy}/ws{world_size}-r{repeat}.json"
LOG_PATTERN = "{study}/logs/bench/{model}/{hardware}/{strategy}/ws{world_size}-r{repeat}.log"
TABLES = ("runs", "scaling", "failures", "rejected", "dropped")
#: The study's figures, in the order the report shows them (captions: benchbench.results.figures.captions.CAPTIONS).
PLOTS = ("throughput", "efficiency", "best", "breakdown", "memory", "bubble", "compression", "pareto")
PLOT_FORMATS = ("svg", "png")
#: The cost model's tables (benchbench validate): per configuration measured, its summary, the grid.
PREDICTION_TABLES = ("prediction", "prediction_summary", "predictions", "recommendations")
#: The cost model's figures (benchbench plot-costmodel), drawn from the calibrations and predictions.csv.
COSTMODEL_PLOTS = ("busbw", "predicted")


def _fields(job: Job) -> dict[str, object]:
    return {
        "study": job.study,
        "model": job.model,
        "hardware": job.hardware,
        "strategy": job.strategy,
        "world_size": job.world_size,
        "repeat": job.repeat,
    }


@dataclass(frozen=True)
class StudyLayout:
    """The output paths of one study under a results root."""

    study: str
    results: Path = Path(RESULTS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "results", Path(self.results))

    @property
    def dir(self) -> Path:
        return self.results / self.study

    @property
    def record_pattern(self) -> str:
        """A job's record path with ``{wildcards}`` (the bench rule's output)."""
        return str(self.results / RECORD_PATTERN)

    @property
    def log_pattern(self) -> str:
        return str(self.results / LOG_PATTERN)

    def record(self, job: Job) -> Path:
        return self.results / RECORD_PATTERN.format(**_fields(job))

    def log(self, rule: str) -> Path:
        return self.dir / "logs" / f"{rule}.log"

    @property
    def raw(self) -> Path:
        return self.dir / "raw"

    @property
    def dropped(self) -> Path:
        return self.dir / "dropped.json"

    def table(self, name: str) -> Path:
        if name not in TABLES + PREDICTION_TABLES:
            raise ValueError(f"unknown table {name!r}; allowed: {TABLES + PREDICTION_TABLES}")
        return self.dir / "tables" / f"{name}.csv"

    def plot(self, name: str, fmt: str) -> Path:
        if name not in PLOTS + COSTMODEL_PLOTS or fmt not in PLOT_FORMATS:
            raise ValueError(f"unknown plot {name}.{fmt}; allowed: {PLOTS + COSTMODEL_PLOTS} x {PLOT_FORMATS}")
        return self.dir / "plots" / f"{name}.{fmt}"

    def costmodel_plots(self) -> list[Path]:
        return [self.plot(n, f) for n in COSTMODEL_PLOTS for f in PLOT_FORMATS]

    @property
    def calibration_dir(self) -> Path:
        """Where the study's calibrations live, one file per hardware profile."""
        return self.dir / "calibration"

    def calibration(self, hardware: str) -> Path:
        """The calibration of one hardware profile (``benchbench calibrate``)."""
        return self.calibration_dir / f"{hardware}.json"

    def plots(self) -> list[Path]:
        return [self.plot(n, f) for n in PLOTS for f in PLOT_FORMATS]

    @property
    def figures_index(self) -> Path:
        """``[{"name", "caption", "has_data", "why"}]`` in ``PLOTS`` order (written by the plot rule)."""
        return self.dir / "plots" / "figures.json"

    @property
    def report(self) -> Path:
        return self.dir / "report" / "index.html"
