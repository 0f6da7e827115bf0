# Records -> tables. The dropped combinations come from the same study expansion as the jobs.


rule dropped:
    output:
        str(LAYOUT.dropped),
    log:
        str(LAYOUT.log("dropped")),
    params:
        dropped=lambda wildcards: [d.to_dict() for d in DROPPED],
    conda:
        CONDA_ENV
    script:
        "../scripts/dropped.py"


rule aggregate:
    input:
        records=RECORDS,
        dropped=rules.dropped.output[0],
    output:
        runs=str(LAYOUT.table("runs")),
        scaling=str(LAYOUT.table("scaling")),
        dropped=str(LAYOUT.table("dropped")),
    log:
        str(LAYOUT.log("aggregate")),
    params:
        python=PYTHON,
        scaling=STUDY["scaling"],
    conda:
        CONDA_ENV
    shell:
        "{params.python:q} -m benchbench aggregate --records {input.records:q} --dropped {input.dropped:q}"
        " --scaling {params.scaling:q} --runs-csv {output.runs:q} --scaling-csv {output.scaling:q}"
        " --dropped-csv {output.dropped:q} > {log:q} 2>&1"
