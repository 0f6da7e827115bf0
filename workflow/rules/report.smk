localrules:
    report,


rule report:
    input:
        tables=rules.aggregate.output,
        plots=rules.plot.output,
        records=list(JOB_BY_RECORD),
    output:
        f"{STUDY_DIR}/report/index.html",
    params:
        description=STUDY.get("description", ""),
    shell:
        "{PY} -m benchbench report --study-dir {STUDY_DIR} --records {input.records}"
        " --description {params.description:q}"
