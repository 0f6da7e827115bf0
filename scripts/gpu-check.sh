#!/usr/bin/env bash
# The CUDA/NCCL path, checked on a real GPU machine in one short run (<= 10 min on one H200):
#   1. the CI study's jobs on the GPU profile (NCCL for every distributed plan), world sizes up to
#      the number of visible GPUs;
#   2. a ~1B-parameter gpt (16 x 2048, seq 1024, vocab 32000) in bf16 at world size 1, and at 2..N
#      where N GPUs are visible (ddp, fsdp);
#   3. from config/studies/gpu-node.yaml, its 1B gpt under issue 13's plans (float8, context
#      parallel, async TP, HSDP, activation checkpointing, DualPipeV, compile: those that exist)
#      at the visible world sizes, 6 steps each; where expansion drops one (one GPU, no torchao)
#      its row says why;
# asserting every record ok, the correctness gate passing (match, or lossy within its bound) and
# MFU in (0, 1), then printing one table. Run from the repository root:  scripts/gpu-check.sh
# Needs the machine's CUDA torch plus pyyaml, jsonschema, numpy, pandas, jinja2; where no package
# registry is reachable, carry missing ones as wheels in .whl/ (installed into /tmp/site below).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import jsonschema" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/results/gpu-check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PY" - "$OUT" <<'PYEOF'
import sys
import time
from pathlib import Path

import torch
import yaml

from benchbench.spec.config import ROOT, check_config, load_config
from benchbench.spec.plan import PRESETS
from benchbench.launch.run_job import run_job
from benchbench.study import expand

out = Path(sys.argv[1])
gpus = torch.cuda.device_count()
assert gpus >= 1, "no CUDA device visible"
print(f"torch {torch.__version__}, {gpus} x {torch.cuda.get_device_name(0)}, NCCL {torch.cuda.nccl.version()}")
world_sizes = [n for n in (1, 2, 4, 8) if n <= gpus]

ci = load_config(ROOT / "config/studies/ci.yaml")
ci = check_config({**ci, "study": "gpu-ci", "hardware": ["h200-sxm"], "world_sizes": world_sizes})
big = check_config({
    "study": "gpu-1b", "hardware": ["h200-sxm"], "dtype": "bf16", "steps": 10, "warmup_steps": 3,
    "strategies": ["single", "ddp", "fsdp"], "world_sizes": world_sizes, "timeout_s": 600,
    "loss_tolerance": 0.05,
    "models": {"gpt-1b": {"arch": "gpt", "layers": 16, "hidden": 2048, "heads": 16, "seq_len": 1024,
                          "vocab": 32000, "batch_size": 8 * max(world_sizes)}},
})
node = yaml.safe_load((ROOT / "config/studies/gpu-node.yaml").read_text())
issue13 = ["fsdp-float8", "cp", "tp-async", "hsdp", "ddp-ac", "fsdp-sac", "pp-dualpipev", "ddp-compile"]
new = check_config({
    **{k: node[k] for k in ("dtype", "scaling", "loss_tolerance", "timeout_s")}, "study": "gpu-node-check",
    "hardware": ["h200-sxm"], "models": {"gpt-1b": node["models"]["gpt-1b"]}, "steps": 6, "warmup_steps": 3,
    "strategies": [s for s in issue13 if s in PRESETS and s in node["strategies"]], "world_sizes": world_sizes,
})

rows, bad = [], []
for cfg in (ci, big, new):
    jobs, dropped = expand(cfg)
    if cfg is new:  # the plans this machine cannot run, and why (one GPU: cp and async TP need 2)
        rows += [(f"{d.strategy}_ws{d.world_size} (dropped)", "dropped", d.reason[:60], *[None] * 7, 0.0)
                 for d in dropped]
    for job in jobs:
        t0 = time.monotonic()
        rec, _ = run_job(job, out / cfg["study"] / f"{job.id}.json")
        s = rec["summary"]
        rows.append((job.id, rec["status"], s.get("verify_verdict"), s.get("verify_grad_rel_err"),
                     s.get("step_time_median_s"), s.get("mfu"), s.get("hfu"), s.get("mfu_precision"),
                     s.get("exposed_comm_s"), s.get("peak_mem_mb"), time.monotonic() - t0))
        ok = rec["status"] == "ok" and s["verify_verdict"] in ("match", "lossy")
        ok = ok and s["mfu"] is not None and 0 < s["mfu"] < 1
        if not ok:
            bad.append((job.id, (rec["error"] or s.get("verify_detail") or f"mfu {s.get('mfu')}")[-600:]))
        if cfg is not ci:
            print(f"  {job.id}: {' -> '.join(rec['applied'])}  tf32={rec['env'].get('tf32')}")

print(f"\n{'job':46} {'status':7} {'gate':9} {'grad err':>9} {'step s':>8} {'MFU':>6} {'HFU':>6} {'peak of':7} "
      f"{'exposed s':>9} {'peak MiB':>9} {'wall s':>7}")
for jid, st, gate, err, t, mfu, hfu, prec, exposed, mem, wall in rows:
    fmt = lambda v, f: format(v, f) if isinstance(v, (int, float)) else "-"  # noqa: E731
    print(f"{jid:46} {st:7} {gate or '-':9} {fmt(err, '.2e'):>9} {fmt(t, '.4f'):>8} {fmt(mfu, '.3f'):>6} "
          f"{fmt(hfu, '.3f'):>6} {prec or '-':7} {fmt(exposed, '.4f'):>9} {fmt(mem, '.0f'):>9} {wall:7.1f}")
for jid, why in bad:
    print(f"\nFAILED {jid}:\n{why}")
sys.exit(1 if bad else 0)
PYEOF
