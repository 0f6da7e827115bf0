# Records -> tables. The dropped combinations come from the same study expansion as the jobs.


rule dropped:
    output:
        str(LAYOUT.dropped),
    log:
        str(LAYOUT.log("dropped")),
    params:
        python=PYTHON,
        dropped=lambda wildcards: json.dumps([d.to_dict() for d in DROPPED]),  # a function: its braces stay text
    conda:
        CONDA_ENV
    # A shell line, not a `run:` block: a `run:` job re-reads the whole workflow in a new process.
    shell:
        "{params.python:q} -c 'import json, sys; from benchbench.record import write_json;"
        " write_json(sys.argv[1], json.loads(sys.argv[2]), log=sys.argv[3])' {output:q} {params.dropped:q} {log:q}"


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
