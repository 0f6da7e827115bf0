"""What the figures say in words, without matplotlib (the report imports it): one caption per figure
(:data:`CAPTIONS`, the same text as workflow/report/<name>.rst), one title each (:data:`TITLES`), and
the opening words of a figure with nothing to show (:data:`NO_DATA`)."""

from __future__ import annotations

#: The opening words of a figure with nothing to show, "no data: <why>"
#: (:func:`benchbench.results.figures.draw.no_data`); the report leaves such figures out.
NO_DATA = "no data:"

#: One line per figure: what it shows and what to look for (the report and Snakemake's report
#: print it under the figure; workflow/report/<name>.rst holds the same text).
CAPTIONS: dict[str, str] = {
    "throughput": "Throughput against world size on log-log axes, one line per strategy (bars: 95 % interval "
    "over repeats); the dashed line is ideal linear scaling from the 1-rank run: the further below it, "
    "the worse the strategy scales.",
    "efficiency": "Scaling efficiency (speedup / world size) against world size: 1.0 is ideal; "
    "a line that falls fast marks a strategy whose overhead grows with the ranks.",
    "best": "The fastest correct configuration (correct = match or lossy) per model and world size, "
    "labelled with its plan (dp·tp·pp, schedule, "
    "micro-batches m); the colour is MFU where measured, else throughput relative to the row's best.",
    "breakdown": "Median step time at each model's largest world size split into ideal (T1/N = step time x "
    "efficiency: the 1-rank step shared perfectly, not measured compute), exposed communication, pipeline "
    "bubble (each capped at what is left of the step), and other scaling loss = step time minus those three "
    "(synchronisation, imbalance, overhead, compute that does not shrink with the ranks).",
    "memory": "Model state (parameters, gradients, optimizer state) of the rank holding the most, measured "
    "(solid) next to the analytic estimate (hatched); sharding strategies should sit well below single.",
    "bubble": "Measured pipeline bubble against micro-batches per step; open markers: each run's theory for "
    "its own schedule; dashed: GPipe/1F1B theory (p-1)/(m+p-1) for p stages. Points above their own theory "
    "marker lose time beyond the schedule's.",
    "compression": "Payload bytes each rank hands to collectives per step (not bus bytes) against the largest "
    "loss deviation from the single-process run: compression should move left without moving far up.",
    "pareto": "Throughput against peak memory per rank, every configuration a point (label: world size; "
    "hollow grey: failed the correctness gate); the black line is the Pareto front of the correct ones: "
    "no correct configuration is both faster and smaller than one on it.",
    "busbw": "Calibration: bus bandwidth (nccl-tests busbw = size / time x the collective's bus factor) against "
    "message size on log-log axes, one line per collective and group size, per measured hardware profile: "
    "small messages are latency-bound (rising), large ones approach the link's bus bandwidth (flat).",
    "predicted": "Predicted throughput against world size up to 4,096 ranks on log-log axes, one panel per hardware "
    "profile (its measured calibration, or its specs: 'from spec'; the title says from which world size the "
    "prediction is extrapolated beyond the calibrated group sizes), one line per strategy (colour) and model (line "
    "style); the global batch is the study's at its own world sizes and the model's batch x world size beyond. Plans "
    "the plan rules refuse are absent; plans predicted not to fit in memory are grey crosses.",
}


def caption_rst(name: str) -> str:
    """The caption file of figure ``name`` for Snakemake's report (workflow/report/<name>.rst)."""
    return f"{CAPTIONS[name]}\n"


#: Each figure's title, above its panels.
TITLES: dict[str, str] = {
    "throughput": "Throughput vs world size (log-log; dashed: ideal)",
    "efficiency": "Scaling efficiency vs world size (1.0 = ideal)",
    "best": "Best configuration per model and world size",
    "breakdown": "Step-time breakdown (largest world size)",
    "memory": "Model state per rank: measured vs estimate",
    "bubble": "Pipeline bubble vs micro-batches",
    "compression": "Gradient compression: payload bytes to collectives per step vs loss deviation",
    "pareto": "Throughput vs peak memory per rank (Pareto front)",
    "busbw": "Collective bus bandwidth vs message size (calibration)",
    "predicted": "Predicted throughput vs world size (cost model)",
}
