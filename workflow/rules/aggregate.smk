# Records -> tables. The dropped combinations come from the same study expansion.


localrules:
    dropped,
    aggregate,


rule dropped:
    output:
        f"{STUDY_DIR}/dropped.json",
    params:
        dropped=[d.__dict__ for d in DROPPED],
    run:
        from benchbench.record import atomic_write_text

        atomic_write_text(output[0], json.dumps(params.dropped, indent=1) + "\n")


rule aggregate:
    input:
        records=list(JOB_BY_RECORD),
        dropped=f"{STUDY_DIR}/dropped.json",
    output:
        runs=f"{STUDY_DIR}/tables/runs.csv",
        scaling=f"{STUDY_DIR}/tables/scaling.csv",
        dropped=f"{STUDY_DIR}/tables/dropped.csv",
    params:
        scaling=STUDY["scaling"],
    shell:
        "{PY} -m benchbench aggregate --records {input.records} --dropped {input.dropped}"
        " --scaling {params.scaling} --out-dir {STUDY_DIR}/tables"
