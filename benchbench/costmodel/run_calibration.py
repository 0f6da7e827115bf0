"""``benchbench calibrate``, the parent side: :func:`run_calibration` starts
:mod:`benchbench.rank.calibrate` on every rank through the jobs' own launcher
(:func:`benchbench.launch.run_job.launch_ranks`: torchrun locally, srun inside a Slurm allocation,
the heartbeat watchdog, ``timeout_s``, no orphans) and writes the calibration atomically — or
raises :class:`CalibrationFailed` and writes nothing. What the ranks measure and how it is fitted:
:mod:`benchbench.costmodel.calibrate`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from benchbench.costmodel.calibrate import CalibrationSpec, check_spec, job_for
from benchbench.costmodel.calibration import Calibration, read_calibration, write_calibration
from benchbench.launch.run_job import failure_of, launch_ranks
from benchbench.launch.workdir import remove_stale_tmpdirs

RANK_MODULE = "benchbench.rank.calibrate"  # what every rank of a calibration runs


class CalibrationFailed(RuntimeError):
    """The calibration's ranks failed or timed out (the message says how); no file was written."""


def run_calibration(spec: CalibrationSpec, out: str | Path, launcher: str = "auto", retry_of: str = "") -> Calibration:
    """Calibrate on the ranks and write the calibration to ``out`` atomically; raises
    :class:`CalibrationFailed` (nothing written at ``out``) when a rank fails or the calibration
    outlives ``timeout_s``, ``ValueError`` for a spec :func:`check_spec` refuses."""
    check_spec(spec)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    job, started, load = job_for(spec, spec.world_size), time.monotonic(), os.getloadavg()[0]
    remove_stale_tmpdirs(out)
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}.", dir=out.parent) as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "job.json").write_text(json.dumps(spec.to_dict()))
        attempt = launch_ranks(job, tmpdir, launcher, RANK_MODULE)
        result = tmpdir / "record.json"
        if attempt.code != 0 or not result.exists():
            failure, error = failure_of(job, tmpdir, attempt)
            raise CalibrationFailed(f"calibration of {spec.hardware} failed ({failure.kind}): {error}")
        cal = read_calibration(result)
    cal.env["wall_time_s"] = round(time.monotonic() - started, 3)
    # the host's 1-minute load average before and after (after: includes the calibration's own
    # ranks): a calibration measured beside other work is flagged by it, not hidden
    cal.env["load_average"] = {"before": load, "after": os.getloadavg()[0]}
    cal.env["retry_of"] = retry_of  # the workflow's retry token (common.smk: retry_token)
    write_calibration(cal, out)
    return cal
