# One benchmark job per record. Timed jobs run strictly one at a time by default (bench_slots=1
# in profiles/default); with `--resources bench_slots=N` up to N share the machine, each on the
# cores its ranks x threads claim, and their records say `timed_alone: false`. Repeats are
# interleaved: every configuration's repeat 0 runs before any repeat 1 (repeat_priority). Under
# the Slurm executor the same job asks for nodes, one task per rank, GPUs per node and, unless
# the study sets slurm_exclusive: false, whole nodes (benchbench.launch.slurm.job_resources);
# `benchbench run` starts its ranks with srun inside the allocation.
# A failed record is a result: it is kept until `--config retry_failed=True` asks for its job
# again (retry_token, common.smk); a job whose study settings changed reruns (its `job` param changed).


rule bench:
    output:
        LAYOUT.record_pattern,
    log:
        LAYOUT.log_pattern,
    params:
        python=PYTHON,
        job=job_json,
        sharing=sharing_flag,
        retry=retry_token(record_path),
    threads: threads_of(job_of)
    priority: repeat_priority
    resources:
        bench_slots=1,
        **slurm_resources(job_of),
    conda:
        CONDA_ENV
    shell:
        "{params.python:q} -m benchbench run --spec {params.job:q} --out {output:q} --allow-failed {params.sharing:q}"
        " --retry-of={params.retry:q}"
        " > {log:q} 2>&1"
