# Records + tables + plots + the cost model's tables, calibrations and figures -> one self-contained HTML page.


rule report:
    input:
        tables=rules.aggregate.output,
        plots=rules.plot.output.plots,
        figures=rules.plot.output.index,
        records=all_records,
        prediction=rules.predict.output,
        calibrations=rules.predict.input.calibrations,
        costmodel_plots=rules.plot_costmodel.output.plots,
    output:
        str(LAYOUT.report),
    log:
        str(LAYOUT.log("report")),
    params:
        python=PYTHON,
        description=lambda wildcards: STUDY.get("description", ""),  # a function: braces in it stay text
        svgs=svg_plots,
        study=lambda wildcards: json.dumps(STUDY, sort_keys=True, default=str),  # shown under Provenance
    conda:
        CONDA_ENV
    shell:
        "{params.python:q} -m benchbench report --records {input.records:q} --tables {input.tables:q}"
        " {input.prediction:q} --plots {params.svgs:q} --figures {input.figures:q} --out {output:q}"
        " --calibration {input.calibrations:q} --study-json={params.study:q}"
        " --description={params.description:q} > {log:q} 2>&1"
