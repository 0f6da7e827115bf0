# Records -> tables. The dropped combinations come from the same study expansion as the jobs.
# A file under raw/ that is not a usable record (truncated, foreign, another schema version) is
# named in the log and in rejected.csv and left out of the other tables; failed and infeasible
# records are counted by failure kind in failures.csv. The report rule is handed every table.


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
        records=all_records,
        dropped=rules.dropped.output[0],
    output:
        runs=str(LAYOUT.table("runs")),
        scaling=str(LAYOUT.table("scaling")),
        failures=str(LAYOUT.table("failures")),
        rejected=str(LAYOUT.table("rejected")),
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
        " --failures-csv {output.failures:q} --rejected-csv {output.rejected:q} --dropped-csv {output.dropped:q}"
        " > {log:q} 2>&1"
