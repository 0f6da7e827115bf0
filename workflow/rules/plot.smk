localrules:
    plot,


rule plot:
    input:
        f"{STUDY_DIR}/tables/scaling.csv",
    output:
        expand(f"{STUDY_DIR}/plots/{{name}}.{{fmt}}", name=["throughput", "efficiency", "strategies"], fmt=["svg", "png"]),
    shell:
        "MPLBACKEND=Agg {PY} -m benchbench plot --scaling {input} --out-dir {STUDY_DIR}/plots"
