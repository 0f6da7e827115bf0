# One benchmark job per record. Timed jobs run strictly one at a time by default (bench_slots=1
# in profiles/default); with `--resources bench_slots=N` up to N share the machine, each on the
# cores its ranks x threads claim, and their records say `timed_alone: false`. Repeats are
# interleaved: every configuration's repeat 0 runs before any repeat 1 (repeat_priority). Under
# the Slurm executor the same job asks for nodes, one task per rank, GPUs per node and, unless
# the study sets slurm_exclusive: false, whole nodes (benchbench.launch.slurm.job_resources);
# `benchbench run` starts its ranks with srun inside the allocation.
# A failed record is a result: it is kept until `--config retry_failed=True` asks for its job
# again (retry_token); a job whose study settings changed reruns (its `job` param changed).


rule bench:
    output:
        LAYOUT.record_pattern,
    log:
        LAYOUT.log_pattern,
    params:
        python=PYTHON,
        job=job_json,
        sharing=sharing_flag,
        retry=retry_token,
    threads: rank_threads
    priority: repeat_priority
    resources:
        bench_slots=1,
        runtime=slurm_resource("runtime"),
        nodes=slurm_resource("nodes"),
        tasks=slurm_resource("tasks"),
        tasks_per_node=slurm_resource("tasks_per_node"),
        cpus_per_task=slurm_resource("cpus_per_task"),
        mem_mb_per_cpu=slurm_resource("mem_mb_per_cpu"),
        gres=slurm_resource("gres"),
        tasks_per_gpu=slurm_resource("tasks_per_gpu"),
        mpi=slurm_resource("mpi"),
        slurm_extra=slurm_resource("slurm_extra"),
    conda:
        CONDA_ENV
    shell:
        "{params.python:q} -m benchbench run --spec {params.job:q} --out {output:q} --allow-failed {params.sharing:q}"
        " --retry-of={params.retry:q}"
        " > {log:q} 2>&1"
