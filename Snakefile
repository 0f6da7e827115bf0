"""benchbench workflow: study config -> bench jobs -> records -> tables -> plots -> report.

    snakemake                                          # the default study, config/config.yaml
    snakemake --configfile config/studies/ci.yaml      # a named study
    snakemake --profile profiles/slurm --configfile …  # on a Slurm cluster
"""

import json
import sys

import yaml
from snakemake.utils import min_version

from benchbench.config import DEFAULT_CONFIG, check_config
from benchbench.study import RECORD_PATTERN, record_path
from benchbench.study import expand as expand_study
from benchbench.slurm import job_resources

min_version("9.0")

# Without --configfile the embedded default study runs; --config KEY=VALUE still overrides it.
if "study" not in config:
    _merged = {**yaml.safe_load(DEFAULT_CONFIG.read_text()), **config}
    config.clear()
    config.update(_merged)

STUDY = check_config(dict(config))  # validated against workflow/schemas/config.schema.yaml
JOBS, DROPPED = expand_study(STUDY)  # the same expansion `benchbench matrix` prints
RESULTS = "results"
STUDY_DIR = f"{RESULTS}/{STUDY['study']}"
JOB_BY_RECORD = {str(record_path(j, RESULTS)): j for j in JOBS}
PY = sys.executable  # run benchbench with the interpreter that runs Snakemake

include: "workflow/rules/bench.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/plot.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        f"{STUDY_DIR}/report/index.html",
    default_target: True
