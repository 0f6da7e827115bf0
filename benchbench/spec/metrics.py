"""Every reported number, declared once: name, unit, one-line definition, how it is combined
across ranks and across repeats.

The registry drives the rest: :func:`summarize` fills exactly :data:`SUMMARY` (and refuses a
summary that misses or adds a name); the record's summary keys, ``runs.csv`` and ``scaling.csv``
columns and the report's columns are taken from it; tests check the record schema and
docs/METRICS.md against it. To add a number: declare it here, compute it in :func:`summarize`
(or the analysis, for per-configuration numbers), define it in docs/METRICS.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Metric:
    """One reported number (or label)."""

    name: str
    unit: str  # "s", "samples/s", "MiB", "bytes", "fraction", "count", "FLOP", "" (label) ...
    definition: str  # one line; the full definition is docs/METRICS.md
    across_ranks: str  # how per-rank values become the job's: max | mean | sum | rank0 | none
    # how repeats become a configuration's (scaling.csv): mean | median | max | max_abs | first | none
    across_repeats: str
    kind: str = "number"  # JSON type: number | integer | string | boolean
    choices: tuple[str, ...] = ()  # allowed values of a string label
    scaling_column: str = ""  # its column in scaling.csv when not its own name

    @property
    def column(self) -> str:
        """The metric's column name in scaling.csv."""
        return self.scaling_column or self.name

    def json_schema(self) -> dict[str, Any]:
        """Its property in the record schema's ``summary`` (every summary figure may be null)."""
        if self.choices:
            return {"enum": [*self.choices, None]}
        return {"type": [self.kind, "null"]}


def _m(name: str, unit: str, ranks: str, repeats: str, definition: str, **kw: Any) -> Metric:
    return Metric(name, unit, definition, ranks, repeats, **kw)


#: The per-step series of a record (not summary figures).
SERIES: tuple[Metric, ...] = (
    _m("step_time_s", "s", "max", "none", "time of each timed step: the slowest rank's, after a barrier"),
    _m("loss", "", "mean", "none", "global-batch loss of every step (warm-up included): mean over loss-holding ranks"),
)

#: The record's ``summary``: one value per job.
SUMMARY: tuple[Metric, ...] = (
    _m("step_time_median_s", "s", "none", "median", "median of step_time_s"),
    _m("step_time_p10_s", "s", "none", "none", "10th percentile of step_time_s"),
    _m("step_time_p90_s", "s", "none", "none", "90th percentile of step_time_s"),
    _m("step_time_cv", "fraction", "none", "max", "sample standard deviation / mean of step_time_s"),
    _m(
        "step_time_drift",
        "fraction",
        "none",
        "max_abs",
        "stationarity: (median of the second half - median of the first half) / median of step_time_s",
    ),
    _m("samples_per_s", "samples/s", "none", "mean", "global batch / step_time_median_s", scaling_column="throughput"),
    _m("tokens_per_s", "tokens/s", "none", "mean", "samples_per_s x sequence length (sequence models)"),
    _m("model_tflops_per_rank", "TFLOP/s", "none", "mean", "analytic model FLOP/s / world size / 1e12"),
    _m("mfu", "fraction", "none", "mean", "model FLOP/s / (world size x mfu_peak_flops); > 1 fails the job"),
    _m(
        "mfu_precision",
        "",
        "none",
        "none",
        "the arithmetic the peak is taken for: fp32 | tf32 | bf16",
        kind="string",
        choices=("fp32", "tf32", "bf16"),
    ),
    _m("mfu_peak_flops", "FLOP/s", "none", "first", "the profile's dense peak of one device for mfu_precision"),
    _m(
        "hardware_flops_per_step",
        "FLOP",
        "sum",
        "first",
        "FLOPs all ranks executed in one step, by torch's flop_counter formulas (recompute included)",
    ),
    _m(
        "hardware_tflops_per_rank",
        "TFLOP/s",
        "none",
        "mean",
        "hardware_flops_per_step / step_time_median_s / world size / 1e12",
    ),
    _m("hfu", "fraction", "none", "mean", "hardware FLOP/s / (world size x mfu_peak_flops); > 1 fails the job"),
    _m(
        "peak_mem_mb",
        "MiB",
        "max",
        "max",
        "peak memory of the process over the timed steps (reset after warm-up): RSS (CPU) or CUDA allocator",
    ),
    _m(
        "peak_mem_source",
        "",
        "rank0",
        "none",
        "where peak_mem_mb comes from",
        kind="string",
        choices=("rss_hwm_reset", "rss", "cuda_allocator"),
    ),
    _m("param_bytes", "bytes", "max", "max", "bytes of the parameters (local shards) a rank holds"),
    _m("grad_bytes", "bytes", "max", "max", "bytes of the gradients (local shards) a rank holds"),
    _m("optim_state_bytes", "bytes", "max", "max", "bytes of the optimizer state a rank holds"),
    _m("model_state_bytes", "bytes", "max", "max", "param_bytes + grad_bytes + optim_state_bytes of one rank"),
    _m(
        "model_state_bytes_est",
        "bytes",
        "none",
        "first",
        "analytic model-state bytes of the rank holding the most (ZeRO paper's bytes per parameter)",
    ),
    _m("activation_bytes", "bytes", "max", "max", "bytes autograd saves for backward in one step on a rank"),
    _m(
        "activation_peak_bytes",
        "bytes",
        "max",
        "max",
        "most bytes autograd holds saved for backward at once in one step on a rank (packed, not yet released)",
    ),
    _m(
        "activation_peak_bytes_est",
        "bytes",
        "none",
        "first",
        "analytic activation_peak_bytes: the micro-batches a pipeline schedule holds in flight, in the job's dtype",
    ),
    _m(
        "activation_bytes_est",
        "bytes",
        "none",
        "first",
        "analytic saved-activation bytes of one step (Korthikanti et al. 2022, adapted; job dtype, SP)",
    ),
    _m(
        "comm_bytes_per_step",
        "bytes",
        "max",
        "first",
        "payload bytes (nccl-tests size) one rank hands to collectives in a step: the largest rank's total",
    ),
    _m(
        "comm_bus_bytes_per_step",
        "bytes",
        "max",
        "first",
        "bus bytes (payload x nccl-tests bus factor) of one rank in a step: the largest rank's total",
    ),
    _m(
        "comm_bytes_source",
        "",
        "rank0",
        "none",
        "how comm_bytes_per_step was obtained",
        kind="string",
        choices=("measured", "analytic", "none"),
    ),
    _m(
        "exposed_comm_s",
        "s",
        "max",
        "median",
        "median over paired extra steps of (step with gradient sync - step without): data-parallel plans",
    ),
    _m(
        "exposed_comm_fraction",
        "fraction",
        "none",
        "median",
        "exposed_comm_s / median time of the paired steps with sync",
    ),
    _m(
        "blocked_fraction_proxy",
        "fraction",
        "mean",
        "median",
        "PROXY: 1 - main-thread CPU time / wall time of a timed step (CPU only; counts contention and waiting)",
    ),
    _m(
        "bubble_fraction_measured",
        "fraction",
        "mean",
        "median",
        "pipeline: 1 - stage compute time / slowest rank's schedule wall, mean over ranks (extra steps)",
    ),
    _m(
        "bubble_fraction_simulated",
        "fraction",
        "mean",
        "median",
        "pipeline: the same with the measured actions replayed in order, transfers free",
    ),
    _m("bubble_fraction_theoretical", "fraction", "none", "first", "the schedule's idle fraction in theory"),
    _m(
        "compile_time_s",
        "s",
        "max",
        "median",
        "compile plans: seconds torch.compile spent compiling during the warm-up steps (torch's own accounting)",
    ),
    _m(
        "compile_events_timed",
        "count",
        "max",
        "max",
        "compile plans: torch.compile compilations (recompiles) during the timed steps; 0 in steady state",
        kind="integer",
    ),
    _m("verify_loss_rel_err", "fraction", "rank0", "max", "gate: |loss - reference| / |reference|"),
    _m("verify_grad_rel_err", "fraction", "rank0", "max", "gate: ||g - g_ref|| / ||g_ref|| over all parameters"),
    _m("verify_grad_norm_rel_err", "fraction", "rank0", "max", "gate: | ||g|| - ||g_ref|| | / ||g_ref||"),
    _m("verify_param_rel_err", "fraction", "rank0", "max", "gate: ||p - p_ref|| after the SGD step / update size"),
    _m("verify_replica_rel_err", "fraction", "rank0", "max", "gate: largest disagreement between replicas"),
    _m(
        "verify_worst_param_rel_err",
        "fraction",
        "rank0",
        "max",
        "gate: largest ||g_p - g_ref_p|| / max(||g_ref_p||, 1e-3 ||g_ref||) over parameters p",
    ),
    _m("verify_tolerance", "fraction", "rank0", "first", "gate: the relative tolerance applied"),
    _m(
        "verify_verdict",
        "",
        "rank0",
        "none",
        "gate: match | MISMATCH | lossy | skipped",
        kind="string",
        choices=("match", "MISMATCH", "lossy", "skipped"),
    ),
    _m("verify_detail", "", "rank0", "none", "gate: what exceeded the tolerance, or why skipped", kind="string"),
    _m("params", "count", "none", "none", "model parameters (analytic, exact)", kind="integer"),
    _m("train_flops_per_sample", "FLOP", "none", "none", "analytic training FLOPs of one sample"),
)

#: Numbers the analysis derives per run (runs.csv) and per configuration (scaling.csv).
DERIVED: tuple[Metric, ...] = (
    _m("loss_first", "", "none", "none", "first entry of loss"),
    _m("loss_last", "", "none", "none", "last entry of loss"),
    _m("loss_dev", "", "none", "max", "max over steps of |loss - loss of the single-process run|"),
    _m("correct", "", "none", "none", "match | MISMATCH | lossy | no reference", kind="string"),
    _m("applied", "", "none", "none", "the composition built, read back from the model", kind="string"),
    _m("throughput", "samples/s", "none", "none", "mean over repeats of samples_per_s"),
    _m(
        "throughput_ci_low",
        "samples/s",
        "none",
        "none",
        "lower end of throughput's 95 % Student-t interval over repeats (NaN with one repeat)",
    ),
    _m(
        "throughput_ci_high",
        "samples/s",
        "none",
        "none",
        "upper end of throughput's 95 % Student-t interval over repeats (NaN with one repeat)",
    ),
    _m(
        "throughput_cv",
        "fraction",
        "none",
        "none",
        "sample sd / mean of samples_per_s over repeats (NaN with one repeat)",
    ),
    _m("per_rank_batch", "samples", "none", "none", "global batch / dp", kind="integer"),
    _m("repeats", "count", "none", "none", "ok repeats of the configuration", kind="integer"),
    _m("speedup", "", "none", "none", "throughput / baseline throughput"),
    _m("efficiency", "fraction", "none", "none", "speedup / world size"),
    _m("baseline", "", "none", "none", "which world-size-1 job the speedup is relative to", kind="string"),
    _m(
        "lossy",
        "",
        "none",
        "none",
        "the plan changes the arithmetic (gradient compression, float8 matmuls)",
        kind="boolean",
    ),
    _m("model_state_vs_est", "", "none", "none", "model_state_bytes / model_state_bytes_est"),
    _m("activation_vs_est", "", "none", "none", "activation_bytes / activation_bytes_est"),
    _m("noisy", "", "none", "none", "a repeat's step-time CV or |drift|, or throughput_cv, above 10 %", kind="boolean"),
)

#: The columns of ``benchbench compare BASE NEW`` (:mod:`benchbench.results.compare`), after the configuration.
COMPARISON: tuple[Metric, ...] = (
    _m("base_throughput", "samples/s", "none", "none", "BASE: mean over repeats of samples_per_s"),
    _m("base_repeats", "count", "none", "none", "BASE: ok repeats of the configuration", kind="integer"),
    _m("new_throughput", "samples/s", "none", "none", "NEW: mean over repeats of samples_per_s"),
    _m("new_repeats", "count", "none", "none", "NEW: ok repeats of the configuration", kind="integer"),
    _m("ratio", "", "none", "none", "new_throughput / base_throughput"),
    _m("ratio_ci_low", "", "none", "none", "lower end of the ratio's (1 - alpha) Welch interval"),
    _m("ratio_ci_high", "", "none", "none", "upper end of the ratio's (1 - alpha) Welch interval"),
    _m("p_value", "fraction", "none", "none", "two-sided Welch t-test of the repeat figures, NEW vs BASE"),
    _m(
        "verdict",
        "",
        "none",
        "none",
        "faster | slower | no significant change | faster? | slower? | only in ...",
        kind="string",
    ),
    _m(
        "note",
        "",
        "none",
        "none",
        "1 repeat: no test; global batch differs; significant within threshold",
        kind="string",
    ),
)

#: The cost model against the records (:mod:`benchbench.costmodel.validate`): ``prediction.csv`` (one row per
#: configuration measured), ``prediction_summary.csv`` (per strategy and overall), ``predictions.csv`` (the
#: grid up to 4,096 ranks) and the calibration the predictions come from.
VALIDATION: tuple[Metric, ...] = (
    _m("step_time_pred_s", "s", "none", "none", "the cost model's step time of the configuration"),
    _m("step_time_meas_s", "s", "none", "none", "median over the ok repeats of step_time_median_s"),
    _m("step_time_err", "fraction", "none", "none", "(step_time_pred_s - step_time_meas_s) / step_time_meas_s"),
    _m("samples_per_s_pred", "samples/s", "none", "none", "the cost model's global batch / step time"),
    _m("samples_per_s_meas", "samples/s", "none", "none", "median over the ok repeats of samples_per_s"),
    _m(
        "samples_per_s_err",
        "fraction",
        "none",
        "none",
        "(samples_per_s_pred - samples_per_s_meas) / samples_per_s_meas: negative = the run was faster than predicted",
    ),
    _m("model_state_pred", "bytes", "none", "none", "the cost model's model-state bytes of the rank holding the most"),
    _m("model_state_meas", "bytes", "none", "none", "median over the ok repeats of model_state_bytes"),
    _m("model_state_err", "fraction", "none", "none", "relative error of model_state_pred"),
    _m("bubble_pred", "fraction", "none", "none", "the cost model's pipeline bubble fraction"),
    _m("bubble_meas", "fraction", "none", "none", "median over the ok repeats of bubble_fraction_measured"),
    _m("bubble_err", "fraction", "none", "none", "relative error of bubble_pred (where bubble_meas > 0)"),
    _m("miss", "", "none", "none", "|step_time_err| above 15 %", kind="boolean"),
    _m("configurations", "count", "none", "none", "configurations with a prediction and a measurement", kind="integer"),
    _m("step_time_err_median", "fraction", "none", "none", "median over configurations of |step_time_err|"),
    _m("step_time_err_worst", "fraction", "none", "none", "largest |step_time_err| (sign kept)"),
    _m("model_state_err_median", "fraction", "none", "none", "median over configurations of |model_state_err|"),
    _m("model_state_err_worst", "fraction", "none", "none", "largest |model_state_err| (sign kept)"),
    _m("bubble_err_median", "fraction", "none", "none", "median over pipeline configurations of |bubble_err|"),
    _m("bubble_err_worst", "fraction", "none", "none", "largest |bubble_err| (sign kept)"),
    _m("memory_pred", "bytes", "none", "none", "the cost model's model state + activations of the fullest rank"),
    _m("alpha_us", "µs", "none", "none", "fitted latency alpha of one message of a collective"),
    _m("bus_bandwidth_gbps", "GB/s", "none", "none", "fitted bus bandwidth B of a collective (1 GB = 1e9 bytes)"),
    _m("payload_bytes", "bytes", "none", "none", "nccl-tests size of one operation of the calibration sweep"),
    _m("time_us", "µs", "none", "none", "median time of one operation of the sweep, slowest rank"),
    _m("algbw_gbps", "GB/s", "none", "none", "nccl-tests algbw: payload_bytes / time"),
    _m("busbw_gbps", "GB/s", "none", "none", "nccl-tests busbw: algbw x the collective's bus factor"),
)

SUMMARY_NAMES: tuple[str, ...] = tuple(m.name for m in SUMMARY)
METRICS: dict[str, Metric] = {m.name: m for m in (*SERIES, *SUMMARY, *DERIVED, *COMPARISON, *VALIDATION)}


def _percentile(t: np.ndarray, q: float) -> float:
    return float(np.percentile(t, q))


def _drift(t: np.ndarray) -> float:
    """Relative change of the median step time from the first half of the timed steps to the
    second (0 with fewer than 4 steps): a warming or throttling machine shows here, not in the CV."""
    if len(t) < 4:
        return 0.0
    half = len(t) // 2
    return float((np.median(t[-half:]) - np.median(t[:half])) / np.median(t))


def _check_utilisation(summary: dict[str, Any]) -> None:
    """MFU or HFU above 1 cannot happen: the profile's peak is wrong, so the job fails."""
    for name in ("mfu", "hfu"):
        if (summary[name] or 0.0) > 1.0:
            raise ValueError(
                f"{name} = {summary[name]:.3g} > 1: the hardware profile's {summary['mfu_precision']} peak "
                f"({summary['mfu_peak_flops']:.3g} FLOP/s) is below what the job achieved; fix peak_flops"
            )


# long: one line per computed summary figure, so each is defined in one visible place
def summarize(
    *,
    step_times: list[float],
    global_batch: int,
    world_size: int,
    tokens_per_sample: int,
    train_flops_per_sample: float,
    params: int,
    peak_flops: float | None,
    measured: dict[str, Any],
) -> dict[str, Any]:
    """The record's summary: every name of :data:`SUMMARY`, no other.

    ``step_times`` are the timed steps (slowest rank each); ``measured`` holds the cross-rank
    figures (memory, communication, exposed communication, bubble, the gate's, ``mfu_precision``,
    ``hardware_flops_per_step``); ``peak_flops`` is the peak for ``mfu_precision``. A MFU or HFU
    above 1 raises: the profile's peak is wrong, and the record must not carry it."""
    t = np.asarray(step_times, dtype=float)
    median = float(np.median(t))
    samples_per_s = global_batch / median
    achieved = train_flops_per_sample * samples_per_s  # model FLOP/s of the whole job
    hw = measured.get("hardware_flops_per_step")
    summary = {
        "step_time_median_s": median,
        "step_time_p10_s": _percentile(t, 10),
        "step_time_p90_s": _percentile(t, 90),
        "step_time_cv": float(t.std(ddof=1) / t.mean()) if len(t) > 1 else 0.0,
        "step_time_drift": _drift(t),
        "samples_per_s": samples_per_s,
        "tokens_per_s": samples_per_s * tokens_per_sample if tokens_per_sample else None,
        "model_tflops_per_rank": achieved / world_size / 1e12,
        "mfu": achieved / (world_size * peak_flops) if peak_flops else None,
        "mfu_peak_flops": peak_flops,
        "hardware_tflops_per_rank": hw / median / world_size / 1e12 if hw else None,
        "hfu": hw / median / (world_size * peak_flops) if hw and peak_flops else None,
        "params": params,
        "train_flops_per_sample": train_flops_per_sample,
        **measured,
    }
    _check_utilisation(summary)
    if set(summary) != set(SUMMARY_NAMES):
        raise ValueError(f"summary keys differ from the registry: {sorted(set(summary) ^ set(SUMMARY_NAMES))}")
    return {name: summary[name] for name in SUMMARY_NAMES}
