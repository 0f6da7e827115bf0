# One benchmark job per record. Each job claims the cores its ranks x threads use, so the local
# executor never runs two timed jobs on the same cores; `--resources bench_slots=1` runs timed
# jobs strictly one at a time. Under the Slurm executor the same job asks for nodes, one task per
# rank and GPUs per node (benchbench.slurm.job_resources), and `benchbench run` starts its ranks
# with srun inside the allocation.


def _job(wildcards):
    return JOB_BY_RECORD[f"{RESULTS}/" + RECORD_PATTERN.format(**wildcards)]


def _slurm(key):
    return lambda wildcards: job_resources(_job(wildcards))[key]


rule bench:
    output:
        f"{RESULTS}/" + RECORD_PATTERN,
    log:
        f"{RESULTS}/{{study}}/logs/bench/{{model}}/{{hardware}}/{{strategy}}/ws{{world_size}}-r{{repeat}}.log",
    params:
        spec=lambda wc: json.dumps(_job(wc), sort_keys=True),
    threads: lambda wc: _job(wc)["world_size"] * _job(wc)["threads_per_rank"]
    resources:
        bench_slots=1,
        runtime=_slurm("runtime"),
        nodes=_slurm("nodes"),
        tasks=_slurm("tasks"),
        tasks_per_node=_slurm("tasks_per_node"),
        cpus_per_task=_slurm("cpus_per_task"),
        mem_mb_per_cpu=_slurm("mem_mb_per_cpu"),
        gres=_slurm("gres"),
        tasks_per_gpu=_slurm("tasks_per_gpu"),
        mpi=_slurm("mpi"),
    shell:
        "{PY} -m benchbench run --spec {params.spec:q} --out {output} --allow-failed > {log} 2>&1"
