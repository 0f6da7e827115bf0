# Records + calibration -> the cost model against the measurements. `calibrate` runs once per
# hardware profile of the study (`benchbench calibrate`: collectives over message sizes, compute
# per model; results/<study>/calibration/<hardware>.json) and is cached: it reruns only when its
# spec changes (the `spec` param: benchbench.study.calibration_spec). A calibration
# that fails writes its failure's record instead (--allow-failed): the bench jobs, predict and the
# report still run, the report saying the calibration is not usable; `--config retry_failed=True`
# reruns it (retry_token, common.smk). It is a timed
# job like bench: it holds one bench_slots, and under the Slurm executor asks for what the largest
# bench job of that hardware asks for. `predict` (benchbench validate) writes prediction.csv (per
# configuration measured: predicted vs measured and the relative errors, computed from the records),
# prediction_summary.csv, predictions.csv (the grid up to 4,096 ranks) and recommendations.csv (the
# best plans at 8, 64 and 1,024 ranks, benchbench.costmodel.recommend); `plot_costmodel` draws
# the busbw and predicted figures. The report rule takes all of them. HARDWARE, LARGEST_JOB and the
# calibrate job's resources are in common.smk.
rule calibrate:
    output:
        str(LAYOUT.calibration("{hardware}")),
    log:
        str(LAYOUT.log("calibrate-{hardware}")),
    params:
        python=PYTHON,
        spec=calibration_spec_json,
        retry=retry_token(calibration_path, top_level=True),
    threads: threads_of(calibration_job)
    resources:
        bench_slots=1,
        **slurm_resources(calibration_job),
    conda:
        CONDA_ENV
    shell:
        "{params.python:q} -m benchbench calibrate --spec {params.spec:q} --out {output:q} --allow-failed"
        " --retry-of={params.retry:q} > {log:q} 2>&1"


rule predict:
    input:
        records=all_records,
        calibrations=expand(str(LAYOUT.calibration("{hardware}")), hardware=HARDWARE),
    output:
        prediction=report(str(LAYOUT.table("prediction")), caption="../report/tables/prediction.rst", category="Tables"),
        summary=report(str(LAYOUT.table("prediction_summary")), caption="../report/tables/prediction_summary.rst",
                       category="Tables"),
        predictions=report(str(LAYOUT.table("predictions")), caption="../report/tables/predictions.rst",
                           category="Tables"),
        recommendations=report(str(LAYOUT.table("recommendations")), caption="../report/tables/recommendations.rst",
                               category="Tables"),
    log:
        str(LAYOUT.log("predict")),
    params:
        python=PYTHON,
        study=lambda wildcards: json.dumps(STUDY, sort_keys=True, default=str),
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(output.prediction)),  # results/<study>
    conda:
        CONDA_ENV
    shell:
        "{params.python:q} -m benchbench validate --records {input.records:q} --calibration {input.calibrations:q}"
        " --out-csv {output.prediction:q} --summary-csv {output.summary:q} --predictions-csv {output.predictions:q}"
        " --recommendations-csv {output.recommendations:q} --results-dir {params.results:q} --study={params.study:q}"
        " > {log:q} 2>&1"


rule plot_costmodel:
    input:
        calibrations=rules.predict.input.calibrations,
        predictions=rules.predict.output.predictions,
    output:
        plots=[
            report(
                str(p),
                caption=f"../report/{p.stem}.rst",
                category="Figures",
                subcategory=p.suffix.lstrip(".").upper(),
                labels={"figure": p.stem, "format": p.suffix.lstrip(".")},
            )
            for p in LAYOUT.costmodel_plots()
        ],
    log:
        str(LAYOUT.log("plot_costmodel")),
    params:
        python=PYTHON,
    conda:
        CONDA_ENV
    shell:
        "MPLBACKEND=Agg {params.python:q} -m benchbench plot-costmodel --calibration {input.calibrations:q}"
        " --predictions {input.predictions:q} --out {output.plots:q} > {log:q} 2>&1"
