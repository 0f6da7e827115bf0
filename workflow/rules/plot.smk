# Tables -> plots (every plot of benchbench/spec/paths.py in every format) and plots/figures.json (each
# figure's caption and whether the study had the data for it). Every figure goes into Snakemake's
# own report (snakemake --report report.html) with its caption from workflow/report/<plot>.rst,
# the same text as benchbench.results.figures.captions.CAPTIONS (tests/test_figures.py checks them).


rule plot:
    input:
        scaling=rules.aggregate.output.scaling,
    output:
        plots=[
            report(
                str(p),
                caption=f"../report/{p.stem}.rst",
                category="Figures",
                subcategory=p.suffix.lstrip(".").upper(),
                labels={"figure": p.stem, "format": p.suffix.lstrip(".")},
            )
            for p in LAYOUT.plots()
        ],
        index=str(LAYOUT.figures_index),
    log:
        str(LAYOUT.log("plot")),
    params:
        python=PYTHON,
    conda:
        CONDA_ENV
    shell:
        "MPLBACKEND=Agg {params.python:q} -m benchbench plot --scaling {input.scaling:q} --out {output.plots:q}"
        " --index {output.index:q} > {log:q} 2>&1"
