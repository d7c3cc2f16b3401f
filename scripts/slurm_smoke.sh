#!/usr/bin/env bash
# Slurm smoke test on this machine: start a one-node Slurm cluster (munged, slurmctld, slurmd on localhost,
# private ports and state under a temporary directory), submit slurm/srpo.sbatch with a stand-in program
# (scripts/slurm_smoke_worker.py) and the CPU quickstart config on 2 ranks, and check that it ran.
#
#   bash scripts/slurm_smoke.sh            # submit -> srun -> torchrun -> c10d rendezvous -> all-reduce (~20 s)
#   bash scripts/slurm_smoke.sh --trainer  # the real trainer: one SRPO step of the CPU quickstart (~2-3 min)
#   bash scripts/slurm_smoke.sh --requeue  # also: USR1 -> SIGTERM to the ranks -> checkpoint -> requeue ->
#                                          # resume from it (~3 min: Slurm delays a requeued job ~2 min)
#
# Needs root and the Debian packages slurmctld, slurmd, slurm-client and munge. Leaves nothing running; the
# temporary directory is removed unless SRPO_SMOKE_KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQUEUE=0
TRAINER=0
[[ "${1:-}" == --requeue ]] && REQUEUE=1
[[ "${1:-}" == --trainer ]] && TRAINER=1
PY=${SRPO_PYTHON:-$ROOT/.venv/bin/python}
CTLD_PORT=${SRPO_SMOKE_CTLD_PORT:-16817}
SLURMD_PORT=${SRPO_SMOKE_SLURMD_PORT:-16818}

die() { echo "slurm smoke: FAIL: $*" >&2; exit 1; }
note() { echo "slurm smoke: $*"; }

for cmd in slurmctld slurmd sbatch scontrol munged munge; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "slurm smoke: missing $cmd (apt-get install slurmctld slurmd slurm-client munge)" >&2; exit 2; }
done
[[ "$(id -u)" == 0 ]] || { echo "slurm smoke: needs root (slurmd runs jobs as their user)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/srpo-slurm-smoke.XXXXXX)
STARTED_MUNGED=""
cleanup() {
  local pidfile pid
  for pidfile in "$WORK/slurmd.pid" "$WORK/slurmctld.pid"; do
    if [[ -f "$pidfile" ]]; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
  done
  if [[ -n "$STARTED_MUNGED" && -f /run/munge/munged.pid ]]; then kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true; fi
  if [[ "${SRPO_SMOKE_KEEP:-0}" == 1 ]]; then note "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- munge (Slurm's authentication) --------------------------------------------------------------------------
if ! munge -n >/dev/null 2>&1; then
  mkdir -p /run/munge && chown munge:munge /run/munge
  runuser -u munge -- munged || die "munged did not start"
  STARTED_MUNGED=1
  sleep 1
  munge -n >/dev/null || die "munge does not work"
fi

# --- a one-node cluster ---------------------------------------------------------------------------------------
HOST=$(hostname -s)
mkdir -p "$WORK/state" "$WORK/spool" "$WORK/run"
cat >"$WORK/slurm.conf" <<EOF
ClusterName=srposmoke
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=smoke Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$WORK/slurm.conf
slurmctld -f "$SLURM_CONF" || die "slurmctld did not start (see $WORK/slurmctld.log)"
slurmd -f "$SLURM_CONF" || die "slurmd did not start (see $WORK/slurmd.log)"
for _ in $(seq 30); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && break
  sleep 1
done
sinfo -h -o %t | grep -q idle || die "the node never became idle: $(sinfo 2>&1)"
note "cluster up: $(sinfo -h -o '%P %D %t %N')"

# --- submit the real batch script with the stand-in program (or the trainer) ---------------------------------
RUN_DIR=$WORK/run
ENTRY=scripts/slurm_smoke_worker.py
EXTRA=()
if ((TRAINER)); then
  note "preparing the quickstart data and a briefly pretrained base model for one real SRPO step"
  "$PY" -m srpo_mcore.quickstart.arithmetic --out "$WORK/data" --train 64 --heldout 16 >/dev/null
  "$PY" -m torch.distributed.run --nproc_per_node=2 --master_addr=127.0.0.1 --master_port=29561 \
    -m srpo_mcore.quickstart.pretrain --out "$WORK/base" --steps 40 --eval-problems 16 >"$WORK/pretrain.log" 2>&1 \
    || die "pretraining the smoke model failed (see $WORK/pretrain.log)"
  ENTRY=pretrain_srpo.py
  EXTRA=("train.init_checkpoint=$WORK/base" "data.math_train_files=[$WORK/data/train.jsonl]"
         "data.code_train_files=[$WORK/data/code_train.jsonl]" "data.eval_files=[$WORK/data/heldout.jsonl]"
         train.eval_interval=0 train.prompts_per_step=8
         logging.progress_bar=false)
fi
export SRPO_ROOT=$ROOT SRPO_PYTHON=$PY SRPO_ENTRY=$ENTRY SRPO_GPUS_PER_NODE=2
export SRPO_RUN_DIR=$RUN_DIR SRPO_SMOKE_WAIT_FOR_STOP=$REQUEUE
# --time well above the script's --signal=B:USR1@600: Slurm sends the signal once less than 600 s are left.
JOB=$(cd "$ROOT" && sbatch --parsable --nodes=1 --gpus-per-node=0 --time=30 --output="$WORK/batch.out" \
  slurm/srpo.sbatch configs/quickstart.yaml train.steps=1 "${EXTRA[@]}")
note "submitted job $JOB"

job_state() { scontrol show job "$JOB" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
wait_state() {  # wait_state SECONDS STATE...: until the job is in one of the states
  local deadline=$((SECONDS + $1)) state
  shift
  while ((SECONDS < deadline)); do
    state=$(job_state)
    for want in "$@"; do [[ "$state" == "$want" ]] && return 0; done
    sleep 1
  done
  return 1
}

if ((REQUEUE)); then
  for _ in $(seq 120); do [[ -f "$RUN_DIR/smoke/rank_1.r0.json" ]] && break; sleep 1; done
  [[ -f "$RUN_DIR/smoke/rank_1.r0.json" ]] || die "ranks never came up: $(cat "$WORK/batch.out")"
  note "ranks up; sending USR1 to the batch shell (what --signal=B:USR1@600 does before the time limit)"
  scancel --batch --signal=USR1 "$JOB"
  wait_state 120 PENDING || die "job was not requeued (state $(job_state)): $(cat "$WORK/batch.out")"
  note "requeued; waiting for Slurm to start it again (~2 min)"
fi
wait_state 400 COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL || die "job did not finish: state $(job_state)"

# --- checks -----------------------------------------------------------------------------------------------------
cat "$WORK/batch.out"
[[ "$(job_state)" == COMPLETED ]] || die "job ended $(job_state)"
last=$((REQUEUE))
if ((TRAINER)); then
  grep -q '"step": 1' "$RUN_DIR/metrics.jsonl" || die "the trainer logged no step 1: $(cat "$RUN_DIR/metrics.jsonl")"
  [[ "$(cat "$RUN_DIR/checkpoints/latest")" == step_000001 ]] || die "no step-1 checkpoint under $RUN_DIR"
  note "PASS (submit, rendezvous, one SRPO step with vLLM rollouts, checkpoint)"
  exit 0
fi
for rank in 0 1; do
  f=$RUN_DIR/smoke/rank_$rank.r$last.json
  [[ -f "$f" ]] || die "missing $f"
  grep -q '"allreduce_ok": true' "$f" || die "$f: $(cat "$f")"
done
ls "$RUN_DIR"/logs/slurm-"$JOB"-r0/*.log >/dev/null 2>&1 || die "no per-node log under $RUN_DIR/logs"
grep -q "not requeueing: training finished" "$WORK/batch.out" || die "the last run did not finish cleanly"
if ((REQUEUE)); then
  grep -q "requeueing job $JOB" "$WORK/batch.out" || die "no requeue in the batch log"
  grep -q '"resumed_from": "step_000001"' "$RUN_DIR/smoke/rank_0.r1.json" || die "the requeued run did not resume"
  grep -q "saved, exiting 75" "$RUN_DIR"/logs/slurm-"$JOB"-r0/*.log || die "the ranks did not save on SIGTERM"
fi
note "PASS ($([[ $REQUEUE == 1 ]] && echo "submit, rendezvous, stop, checkpoint, requeue, resume" || echo "submit, rendezvous, all-reduce"))"
