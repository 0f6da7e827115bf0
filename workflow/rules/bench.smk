# One benchmark job per record. Each job claims the cores its ranks x threads use, so the local
# executor never runs two timed jobs on the same cores. `--resources bench_slots=1` runs timed
# jobs strictly one at a time.


def _job(wildcards, output=None):
    path = f"{RESULTS}/" + RECORD_PATTERN.format(**wildcards)
    return JOB_BY_RECORD[path]


def _ranks_x_threads(wildcards):
    job = _job(wildcards)
    return job["world_size"] * job["threads_per_rank"]


rule bench:
    output:
        f"{RESULTS}/" + RECORD_PATTERN,
    log:
        f"{RESULTS}/{{study}}/logs/bench/{{model}}/{{hardware}}/{{strategy}}/ws{{world_size}}-r{{repeat}}.log",
    params:
        spec=lambda wc: json.dumps(_job(wc), sort_keys=True),
    threads: _ranks_x_threads
    resources:
        bench_slots=1,
        runtime=lambda wc: int(_job(wc)["timeout_s"] // 60) + 5,
    shell:
        "{PY} -m benchbench run --spec {params.spec:q} --out {output} --allow-failed > {log} 2>&1"
