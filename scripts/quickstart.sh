#!/usr/bin/env bash
# The CPU quickstart (README's first command, via `make quickstart`):
#   1. pretrain the tiny Qwen2-shaped model from scratch on synthetic arithmetic (Megatron-Core, TP2, 2 ranks);
#   2. train it with SRPO (vLLM rollouts, rule rewards, History Resampling) from that checkpoint.
# Everything lands under runs/quickstart/. Re-running reuses the pretrained base if it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
RUN_DIR=${RUN_DIR:-runs/quickstart}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-250}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

if [ ! -f "$RUN_DIR/base/pretrain_summary.json" ]; then
  echo "== [1/2] pretraining the quickstart model on synthetic arithmetic ($PRETRAIN_STEPS steps)"
  $PY -m torch.distributed.run --nproc_per_node=2 --master_addr=127.0.0.1 --master_port="${MASTER_PORT:-29511}" \
    -m srpo_mcore.quickstart.pretrain --config configs/quickstart.yaml --out "$RUN_DIR/base" --steps "$PRETRAIN_STEPS"
else
  echo "== [1/2] reusing $RUN_DIR/base"
fi
cat "$RUN_DIR/base/pretrain_summary.json"; echo

if [ -f srpo_mcore/train/trainer.py ]; then
  echo "== [2/2] SRPO on 2 CPU ranks (TP2)"
  $PY -m torch.distributed.run --nproc_per_node=2 --master_addr=127.0.0.1 --master_port="${MASTER_PORT:-29512}" \
    pretrain_srpo.py --config configs/quickstart.yaml "train.run_dir=$RUN_DIR" "train.init_checkpoint=$RUN_DIR/base" "$@"
else
  echo "== [2/2] the SRPO trainer is not built yet (see issues); stopping after pretraining"
fi
