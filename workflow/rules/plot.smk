# Tables -> plots (every plot of benchbench/layout.py in every format).


rule plot:
    input:
        scaling=rules.aggregate.output.scaling,
    output:
        plots=[str(p) for p in LAYOUT.plots()],
    log:
        str(LAYOUT.log("plot")),
    params:
        python=PYTHON,
    conda:
        CONDA_ENV
    shell:
        "MPLBACKEND=Agg {params.python:q} -m benchbench plot --scaling {input.scaling:q} --out {output.plots:q}"
        " > {log:q} 2>&1"
