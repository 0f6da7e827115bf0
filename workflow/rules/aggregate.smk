# Records -> tables. The dropped combinations come from the same study expansion as the jobs.
# A file under raw/ that is not a usable record (truncated, foreign, another schema version) is
# named in the log and in rejected.csv and left out of the other tables; failed and infeasible
# records are counted by failure kind in failures.csv. The report rule is handed every table; each
# table also goes into Snakemake's own report with its caption from workflow/report/tables/.


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
        runs=report(str(LAYOUT.table("runs")), caption="../report/tables/runs.rst", category="Tables"),
        scaling=report(str(LAYOUT.table("scaling")), caption="../report/tables/scaling.rst", category="Tables"),
        failures=report(str(LAYOUT.table("failures")), caption="../report/tables/failures.rst", category="Tables"),
        rejected=report(str(LAYOUT.table("rejected")), caption="../report/tables/rejected.rst", category="Tables"),
        dropped=report(str(LAYOUT.table("dropped")), caption="../report/tables/dropped.rst", category="Tables"),
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
