# Batched launches (the study's jobs_per_launch > 1; benchbench/launch/batch.py), instead of
# bench.smk: the jobs of one (hardware, world size, threads per rank), in the study's stable job
# order, are cut into batches of up to jobs_per_launch; each batch is one rule (bench_batch_<k>)
# whose outputs are its records and whose params are its jobs, so a changed job reruns its batch
# only. One launch of ranks per batch (one allocation under the Slurm executor: the largest
# member's resources, the members' runtimes summed). Retries: the batch reruns when one of its
# records says failed and `--config retry_failed=True` (batch_retry_token); the token is kept in
# every record of the batch and read back, so nothing reruns otherwise.


from benchbench.launch.batch import batch_key


def _batches():
    groups = {}
    for job in JOBS:
        groups.setdefault(batch_key(job), []).append(job)
    size = STUDY["jobs_per_launch"]
    return [members[i : i + size] for members in groups.values() for i in range(0, len(members), size)]


BATCHES = _batches()


def batch_jobs_json(members):
    """The batch's jobs, as `run-batch --specs` takes them (each as job_json makes it)."""
    return "[" + ",".join(_job_spec(j) for j in members) + "]"


def batch_retry_token(members):
    """The batch's retry token: its members' (read_retry_token of each record), the distinct
    non-empty ones joined."""
    tokens = {read_retry_token(str(LAYOUT.record(j))) for j in members}
    return " ".join(sorted(t for t in tokens if t))


def batch_resources(members):
    """The batch's Slurm resources (SLURM_KEYS): its largest member's, with the members' runtimes
    summed."""
    res = [job_slurm(j) for j in members]
    largest = max(res, key=lambda r: (r["nodes"] or 0, r["tasks"] or 0))
    return {key: largest[key] for key in SLURM_KEYS} | {"runtime": sum(r["runtime"] for r in res)}


for _k, _members in enumerate(BATCHES):

    rule:
        name:
            f"bench_batch_{_k}"
        output:
            [str(LAYOUT.record(j)) for j in _members],
        log:
            str(LAYOUT.dir / "logs" / "bench" / f"batch-{_k}.log"),
        params:
            python=PYTHON,
            jobs=batch_jobs_json(_members),
            sharing=sharing_flag,
            retry=lambda wildcards, members=_members: batch_retry_token(members),
        threads: cores(_members[0])
        priority: job_priority(_members[0])
        resources:
            bench_slots=1,
            **batch_resources(_members),
        conda:
            CONDA_ENV
        shell:
            "{params.python:q} -m benchbench run-batch --specs {params.jobs:q} --out {output:q} --allow-failed"
            " {params.sharing:q} --retry-of={params.retry:q} > {log:q} 2>&1"
