# Shared by the workflow files: the study's jobs and dropped combinations (the same expansion
# `benchbench matrix` prints), the results layout (benchbench/spec/paths.py), the job behind a
# bench rule's wildcards, which rules run on the submitting host, the calibrate job's hardware and
# the job that sizes it (the largest bench job of that hardware), and the helpers of the timed
# rules (bench, bench_batch_<k>, calibrate): threads, Slurm resources and retry token, each given
# the job or the file that differs between them.
import dataclasses
import json
import os
import random
import sys

from snakemake.settings.types import DeploymentMethod

from benchbench.spec.paths import RESULTS, StudyLayout
from benchbench.protocol.provenance import GIT_COMMIT_ENV, git_commit
from benchbench.launch.slurm import job_resources, timed_alone
from benchbench.study import calibration_spec, expand_runnable

JOBS, DROPPED = expand_runnable(STUDY, _WHAT)  # a study with no job to run is refused here
LAYOUT = StudyLayout(STUDY["study"], RESULTS)
os.environ.setdefault(GIT_COMMIT_ENV, git_commit())  # read once per study; every job inherits it
JOB_BY_RECORD = {str(LAYOUT.record(j)): j for j in JOBS}
RECORDS = list(JOB_BY_RECORD)
_RECORD_PATTERN = LAYOUT.record_pattern  # a property that builds a Path: once, not per job
# The software of every rule: workflow/envs/benchbench.yaml under --use-conda (its `python`),
# else the interpreter that runs Snakemake (the .venv that `make setup` built).
CONDA_ENV = "../envs/benchbench.yaml"
USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PYTHON = "python" if USE_CONDA else sys.executable
# Timed jobs run one at a time unless the user lets several share the machine
# (--resources bench_slots=N, N > 1; profiles/default sets 1); under the Slurm executor each holds
# whole nodes unless the study says slurm_exclusive: false. Records say which (timed_alone).
_SLOTS = workflow.global_resources.get("bench_slots")
BENCH_SLOTS = getattr(_SLOTS, "value", _SLOTS)

# Names in wildcards are the study's own safe names (benchbench.spec.config.SAFE_NAME, the schema's
# $defs/name): never a path, never a shell word that needs quoting, never '.' or '..'.
wildcard_constraints:
    study=r"[A-Za-z0-9_][A-Za-z0-9_.-]*",
    model=r"[A-Za-z0-9_][A-Za-z0-9_.-]*",
    hardware=r"[A-Za-z0-9_][A-Za-z0-9_.-]*",
    strategy=r"[A-Za-z0-9_][A-Za-z0-9_.-]*",
    world_size=r"\d+",
    repeat=r"\d+",


localrules:
    dropped,
    aggregate,
    plot,
    predict,
    plot_costmodel,
    report,


def record_path(wildcards):
    """A bench job's record, from its wildcards."""
    return _RECORD_PATTERN.format(**wildcards)


def job_of(wildcards):
    """The job behind a bench job's wildcards."""
    return JOB_BY_RECORD[record_path(wildcards)]


def all_records(wildcards):
    """Every record, as an input function. A rule that also names another rule's output
    (rules.X.output) gets Snakemake to hash each plain input item once per file it holds: a list
    of 5,000 records as a plain item costs 5,000 x 5,000 hashes (~10 s); a function hashes once."""
    return RECORDS


def _round_orders():
    """For each repeat, the order in which the configurations start: a permutation seeded by the
    study's seed and the repeat, so no configuration always runs first in its round."""
    configs = sorted({(j.model, j.hardware, j.strategy, j.world_size) for j in JOBS})
    orders = {}
    for r in range(STUDY["repeats"]):
        shuffled = random.Random(f"{STUDY.get('seed', 0)}-{r}").sample(configs, len(configs))
        orders[r] = {c: len(configs) - i for i, c in enumerate(shuffled)}  # first: highest
    return orders, len(configs)


ROUND_ORDERS, N_CONFIGS = _round_orders()


def job_priority(job):
    """Repeats interleaved across configurations: every configuration's repeat k runs before any
    repeat k+1 (a slow phase of the machine then spreads over configurations, not onto one), and
    within a round the configurations start in a seeded shuffled order (ROUND_ORDERS). Higher runs
    first; kept >= 0, as Snakemake's ILP scheduler leaves negative-priority jobs out."""
    config = (job.model, job.hardware, job.strategy, job.world_size)
    return (STUDY["repeats"] - job.repeat) * (N_CONFIGS + 1) + ROUND_ORDERS[job.repeat].get(config, 0)


def repeat_priority(wildcards):
    """The bench rule's priority: job_priority of its job."""
    return job_priority(job_of(wildcards))


def sharing_flag(wildcards):
    """`[--timed-shared]` unless this job is timed alone (else no word: a list, so the shell line
    quotes it like every other value); read when the DAG is built, once the executor is known
    (not when the Snakefile is parsed)."""
    executor = workflow.executor_plugin.name if workflow.executor_plugin else None
    return [] if timed_alone(BENCH_SLOTS, executor, STUDY["slurm_exclusive"]) else ["--timed-shared"]


_PARTS = {}


def _part_dict(value):
    """``value.to_dict()`` of a job's plan or hardware profile, made once per object: the jobs of
    one configuration share them (repeats are copies of one job)."""
    if id(value) not in _PARTS:
        _PARTS[id(value)] = (value, value.to_dict())  # the object is kept, so its id stays its own
    return _PARTS[id(value)][1]


def job_json(wildcards):
    """``json.dumps(job.to_dict(), sort_keys=True)`` of the bench job, without copying the parts
    every job shares (to_dict deep-copies; json.dumps only reads)."""
    return _job_spec(job_of(wildcards))


def _job_spec(job):
    spec = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}
    spec.update({k: _part_dict(v) for k, v in spec.items() if hasattr(v, "to_dict")}, id=job.id)
    return json.dumps(spec, sort_keys=True)


def svg_plots(wildcards, input):
    return [p for p in [*input.plots, *input.costmodel_plots] if p.endswith(".svg")]


HARDWARE = list(dict.fromkeys(j.hardware for j in JOBS))
# The largest bench job of each hardware (most ranks): its Slurm request and its cores.
LARGEST_JOB = {h: max((j for j in JOBS if j.hardware == h), key=lambda j: (j.world_size, j.threads_per_rank))
               for h in HARDWARE}


_CALIBRATION_SPECS = {}


def calibration_spec_json(wildcards):
    """The calibrate rule's spec (calibration_spec, as JSON), made once per hardware: it expands
    the whole study, and Snakemake reads a rule's params more than once."""
    hw = wildcards.hardware
    if hw not in _CALIBRATION_SPECS:
        _CALIBRATION_SPECS[hw] = json.dumps(calibration_spec(STUDY, hw).to_dict(), sort_keys=True, default=str)
    return _CALIBRATION_SPECS[hw]


def calibration_job(wildcards):
    """The bench job a calibrate job is sized by: the largest of its hardware (LARGEST_JOB)."""
    return LARGEST_JOB[wildcards.hardware]


def calibration_path(wildcards):
    """A calibrate job's output, from its wildcards."""
    return str(LAYOUT.calibration(wildcards.hardware))


# What the timed rules (bench, bench_batch_<k>, calibrate) share, each helper given what differs:
# the job that sizes a rule's job (job_of, calibration_job; a batch's largest member) and the file
# that keeps its retry token (record_path, calibration_path).
# The Slurm resources of a timed job (benchbench.launch.slurm.job_resources), in the rules' order.
SLURM_KEYS = ("runtime", "nodes", "tasks", "tasks_per_node", "cpus_per_task", "mem_mb_per_cpu", "gres", "tasks_per_gpu",
              "mpi", "slurm_extra")


def cores(job):
    """The cores a job's ranks claim: ranks x threads per rank (its rule's threads)."""
    return job.world_size * job.threads_per_rank


def threads_of(job_for):
    """A timed rule's threads, as a Snakemake callable: the cores of ``job_for(wildcards)``."""
    return lambda wildcards: cores(job_for(wildcards))


_SLURM = {}


def job_slurm(job):
    """job_resources of ``job`` under the study's slurm_exclusive, made once per job (Snakemake
    asks for each resource apart)."""
    if job.id not in _SLURM:
        _SLURM[job.id] = job_resources(job, STUDY["slurm_exclusive"])
    return _SLURM[job.id]


def _resource(job_for, key):
    return lambda wildcards: job_slurm(job_for(wildcards))[key]


def slurm_resources(job_for):
    """A timed rule's Slurm resources (`resources: bench_slots=1, **slurm_resources(job_for)`):
    job_resources of ``job_for(wildcards)``, one Snakemake callable per key of SLURM_KEYS."""
    return {key: _resource(job_for, key) for key in SLURM_KEYS}


def read_retry_token(path, top_level=False):
    """The retry token of the timed job whose output is ``path`` (a record, or with ``top_level`` a
    calibration). The file keeps the token it ran with (env.retry_of, or for ``top_level`` first
    retry_of at its top) and the token is read back, so Snakemake's params trigger sees no change;
    with `--config retry_failed=True` a file that says failed yields its creation time instead (an
    unreadable file: its modification time), which differs, so that job reruns and no other. A
    failed record or calibration is kept until then (predict and the report run without a failed
    calibration). Empty when there is no file. Needs Snakemake's metadata (.snakemake/): results
    copied without it are kept as they are."""
    try:
        with open(path) as f:
            doc = json.load(f)
        failed = doc.get("status") == "failed"
        kept = doc.get("env", {}).get("retry_of")
        if top_level:  # a calibration's failure record keeps it at its top
            kept = doc.get("retry_of", kept)
        retried = str(kept or "")
    except FileNotFoundError:
        return ""  # no file yet: it runs anyway
    except (OSError, ValueError, AttributeError):  # unusable (aggregate reports it): retried as failed
        failed, doc, retried = True, {"created_at": f"unreadable {os.path.getmtime(path)}"}, ""
    if STUDY["retry_failed"] and failed:
        return str(doc.get("created_at", "retry"))
    return retried


def retry_token(path_for, top_level=False):
    """A timed rule's `retry` param, as a Snakemake callable: read_retry_token of the file
    ``path_for(wildcards)``; the param changes only to retry a failed job."""
    return lambda wildcards: read_retry_token(path_for(wildcards), top_level)
