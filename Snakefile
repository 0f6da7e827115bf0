"""benchbench workflow: study config -> bench jobs -> records -> tables -> plots -> report.

    snakemake                                          # the default study, config/config.yaml
    snakemake --configfile config/studies/ci.yaml      # a named study
    snakemake --profile profiles/slurm --configfile …  # on a Slurm cluster
"""

import yaml
from snakemake.utils import min_version

from benchbench.config import DEFAULT_CONFIG, check_config

min_version("9.0")

# Without --configfile the embedded default study runs; --config KEY=VALUE still overrides it.
if "study" not in config:
    _merged = {**yaml.safe_load(DEFAULT_CONFIG.read_text()), **config}
    config.clear()
    config.update(_merged)

STUDY = check_config(dict(config))  # validated against workflow/schemas/config.schema.yaml


include: "workflow/rules/common.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/plot.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        str(LAYOUT.report),
    default_target: True
