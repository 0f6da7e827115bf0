"""benchbench workflow: study config -> bench jobs -> records -> tables -> plots -> report, and
calibrate -> predict (the cost model against the records) -> the report's Prediction section.

    snakemake                                          # the default study, config/config.yaml
    snakemake --configfile config/studies/ci.yaml      # a named study
    snakemake --profile profiles/slurm --configfile …  # on a Slurm cluster
"""

from pathlib import Path

import yaml
from snakemake.utils import min_version

from benchbench.spec.config import DEFAULT_CONFIG, check_config, read_study_file

min_version("9.0")

# Without --configfile the embedded default study runs; --config KEY=VALUE still overrides it.
# With one, the study is the file(s) alone: a key missing there is an error, never the default's.
CONFIGFILES = [str(f) for f in workflow.overwrite_configfiles or []]
if not CONFIGFILES:
    _merged = {**yaml.safe_load(DEFAULT_CONFIG.read_text()), **config}
    config.clear()
    config.update(_merged)
for _file in CONFIGFILES:
    read_study_file(_file)  # what Snakemake's own YAML reading lets pass: a key given twice

_OVERRIDES = " with --config " + " ".join(workflow.config_settings.config) if workflow.config_settings.config else ""
_WHAT = f"study config {' + '.join(CONFIGFILES) or DEFAULT_CONFIG}{_OVERRIDES}"
STUDY = check_config(dict(config), _WHAT, Path(CONFIGFILES[-1]).parent if CONFIGFILES else None)  # validated against workflow/schemas/config.schema.yaml


report: "workflow/report/workflow.rst"  # snakemake --report: figures and tables with their captions


include: "workflow/rules/common.smk"
if STUDY["jobs_per_launch"] > 1:  # batched launches (opt-in)

    include: "workflow/rules/bench_batch.smk"

else:

    include: "workflow/rules/bench.smk"

include: "workflow/rules/aggregate.smk"
include: "workflow/rules/plot.smk"
include: "workflow/rules/costmodel.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        str(LAYOUT.report),
    default_target: True
