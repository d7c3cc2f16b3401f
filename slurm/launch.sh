# shellcheck shell=bash
# Functions behind slurm/srpo.sbatch: build the srun + torchrun command line, set the NCCL environment, forward
# stop signals to the trainer and decide whether to requeue. Sourced, never executed; everything is a function
# so tests can call the pieces (tests/slurm/test_slurm.py) and `srpo.sbatch --print-command` can show the result.
#
# Settings (environment variables; all optional):
#   SRPO_ROOT           repository root on the shared file system     (default: $SLURM_SUBMIT_DIR, else cwd)
#   SRPO_PYTHON         Python of the project's environment             (default: $SRPO_ROOT/.venv/bin/python)
#   SRPO_ENTRY          program torchrun starts on every GPU            (default: pretrain_srpo.py)
#   SRPO_RUN_DIR        run directory (checkpoints, logs)               (default: the config's train.run_dir)
#   SRPO_GPUS_PER_NODE  ranks per node                                  (default: $SLURM_GPUS_ON_NODE, else 8)
#   SRPO_RDZV_PORT      c10d rendezvous port on the first node          (default: 20000 + job id % 10000)
#   SRPO_STOP_GRACE_S   how long torchrun lets ranks save after SIGTERM (default: 570, under --signal's 600)
#   SRPO_MAX_REQUEUES   stop requeueing after this many restarts        (default: 20)
#   SRPO_PREFLIGHT      0 skips the dry-run memory/layout check          (default: 1)

SRPO_EXIT_CHECKPOINTED=75  # the trainer saved a checkpoint on SIGTERM and stopped (srpo_mcore/train/checkpoint.py)

srpo_log() {
  local line
  line="[srpo $(date '+%F %T')] $*"
  echo "$line"
  if [[ -n "${SRPO_LOG_DIR:-}" && -d "${SRPO_LOG_DIR}" ]]; then echo "$line" >>"$SRPO_LOG_DIR/batch.log"; fi
}

# First host of a Slurm node list ("gpu[003-006,9],cpu1" -> gpu003). scontrol does it when a Slurm
# configuration is reachable; the fallback handles one bracket group, enough for --print-command off-cluster.
srpo_first_host() {
  local nodelist=$1 first
  if command -v scontrol >/dev/null 2>&1 && first=$(scontrol show hostnames "$nodelist" 2>/dev/null | head -n 1) \
    && [[ -n "$first" ]]; then
    echo "$first"
    return
  fi
  if [[ "$nodelist" =~ ^([^,\[]+)\[([0-9]+) ]]; then
    echo "${BASH_REMATCH[1]}${BASH_REMATCH[2]}"
  else
    echo "${nodelist%%,*}"
  fi
}

srpo_rdzv_port() {
  echo "${SRPO_RDZV_PORT:-$((20000 + ${1:-0} % 10000))}"
}

# The config's train.run_dir, made absolute against SRPO_ROOT (unless SRPO_RUN_DIR is set).
srpo_run_dir() {
  local config=$1 dir
  shift
  if [[ -n "${SRPO_RUN_DIR:-}" ]]; then
    dir=$SRPO_RUN_DIR
  else
    dir=$(cd "$SRPO_ROOT" && "$SRPO_PYTHON" -c 'import sys
from srpo_mcore.config import load_config
print(load_config(sys.argv[1], sys.argv[2:]).train.run_dir)' "$config" "$@") || return 1
  fi
  [[ "$dir" = /* ]] || dir="$SRPO_ROOT/$dir"
  echo "$dir"
}

# Environment every rank inherits (srun exports the batch shell's environment). Site-specific NCCL settings
# (NCCL_SOCKET_IFNAME, NCCL_IB_HCA, ...) pass through untouched.
srpo_export_env() {
  local cpus=${SLURM_CPUS_ON_NODE:-8}
  export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
  export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}  # a hung collective fails the job
  export CUDA_DEVICE_MAX_CONNECTIONS=${CUDA_DEVICE_MAX_CONNECTIONS:-1}  # Megatron TP/SP communication overlap
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$((cpus / SRPO_GPUS > 0 ? cpus / SRPO_GPUS : 1))}
  export PYTHONUNBUFFERED=1
  # torchrun forwards SIGTERM to its ranks and SIGKILLs them after this many seconds (torch >= 2.12 reads it;
  # older torchrun always waits 30 s, see slurm/README.md).
  export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=${TORCH_ELASTIC_SHUTDOWN_TIMEOUT:-${SRPO_STOP_GRACE_S:-570}}
}

# Fill the arrays SRPO_SRUN_CMD and SRPO_TORCHRUN_CMD. Arguments: config, then config overrides.
srpo_build_command() {
  local config=$1
  shift
  local head port rdzv_id
  head=$(srpo_first_host "$SRPO_NODELIST")
  port=$(srpo_rdzv_port "$SRPO_JOB_ID")
  rdzv_id="srpo-${SRPO_JOB_ID}-r${SRPO_RESTART}"
  SRPO_SRUN_CMD=(
    srun --nodes="$SRPO_NNODES" --ntasks="$SRPO_NNODES" --ntasks-per-node=1
    --cpus-per-task="${SLURM_CPUS_ON_NODE:-1}" --kill-on-bad-exit=1 --chdir="$SRPO_ROOT"
    --output="$SRPO_LOG_DIR/%N.log"
  )
  SRPO_TORCHRUN_CMD=(
    "$SRPO_PYTHON" -m torch.distributed.run
    --nnodes="$SRPO_NNODES" --nproc-per-node="$SRPO_GPUS"
    --rdzv-backend=c10d --rdzv-endpoint="$head:$port" --rdzv-id="$rdzv_id" --max-restarts=0
    "$SRPO_ENTRY" --config "$config" "$@" "train.run_dir=$SRPO_RUN_DIR_ABS"
  )
}

# Should the job go back to the queue? Arguments: stop reason (time-limit | stop | terminated | ""), the step's
# exit code, restarts so far, the restart limit. Prints "yes" or "no: <why>".
srpo_should_requeue() {
  local reason=$1 rc=$2 restarts=$3 max=$4
  if ((restarts >= max)); then
    echo "no: already restarted $restarts times (SRPO_MAX_REQUEUES=$max)"
  elif [[ "$reason" == time-limit ]]; then
    echo "yes"
  elif [[ "$reason" == stop ]]; then
    echo "no: stop requested (USR2)"
  elif [[ "$reason" == terminated ]]; then
    echo "no: SIGTERM from Slurm (scancel, or preemption, which Slurm requeues itself)"
  elif ((rc == SRPO_EXIT_CHECKPOINTED)); then
    echo "yes"
  elif ((rc == 0)); then
    echo "no: training finished"
  else
    echo "no: the job failed with exit code $rc"
  fi
}

srpo_latest_checkpoint() {
  cat "$SRPO_RUN_DIR_ABS/checkpoints/latest" 2>/dev/null || echo "(none)"
}

# --- signals ----------------------------------------------------------------------------------------------
# USR1 (sbatch --signal=B:USR1@600, or `scancel --batch --signal=USR1`): checkpoint, stop, requeue.
# USR2 (`scancel --batch --signal=USR2`): checkpoint and stop for good.
# Both reach the ranks as one SIGTERM through `scancel --signal=TERM <job>` (every process of the job's steps:
# torchrun and its ranks; the step is then bounded only by the time limit, not by KillWait).
# TERM to the batch shell (scancel, preemption) reaches the steps from Slurm directly: only note it.
srpo_forward_stop() {
  SRPO_STOP_REASON=$1
  if [[ -n "${SRPO_STOP_SENT:-}" ]]; then return; fi
  SRPO_STOP_SENT=1
  srpo_log "$2: asking the trainer to checkpoint and stop (SIGTERM to job $SRPO_JOB_ID's steps)"
  scancel --signal=TERM "$SRPO_JOB_ID" || srpo_log "scancel --signal=TERM failed"
}

srpo_on_usr1() { srpo_forward_stop time-limit "SIGUSR1 (time limit near)"; }
srpo_on_usr2() { srpo_forward_stop stop "SIGUSR2 (stop requested)"; }
srpo_on_term() {
  SRPO_STOP_REASON=${SRPO_STOP_REASON:-terminated}
  srpo_log "SIGTERM: Slurm is ending the job; the trainer got SIGTERM too and has KillWait/GraceTime to save"
}

# --- main -------------------------------------------------------------------------------------------------
srpo_usage() {
  echo "usage: sbatch [--nodes=N] slurm/srpo.sbatch CONFIG [key.sub=value ...]"
  echo "       bash slurm/srpo.sbatch --print-command CONFIG [key.sub=value ...]"
}

srpo_setup() {
  SRPO_ROOT=${SRPO_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
  if [[ -z "${SRPO_PYTHON:-}" ]]; then
    if [[ -x "$SRPO_ROOT/.venv/bin/python" ]]; then SRPO_PYTHON=$SRPO_ROOT/.venv/bin/python; else SRPO_PYTHON=python3; fi
  fi
  SRPO_ENTRY=${SRPO_ENTRY:-pretrain_srpo.py}
  SRPO_JOB_ID=${SLURM_JOB_ID:-0}
  SRPO_NNODES=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
  SRPO_NODELIST=${SLURM_JOB_NODELIST:-$(hostname -s)}
  SRPO_RESTART=${SLURM_RESTART_COUNT:-0}
  SRPO_GPUS=${SRPO_GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
}

srpo_main() {
  local print_only=0
  if [[ "${1:-}" == --print-command ]]; then
    print_only=1
    shift
  fi
  if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
    srpo_usage
    return 2
  fi
  local config=$1
  shift
  srpo_setup
  SRPO_RUN_DIR_ABS=$(srpo_run_dir "$config" "$@") || {
    echo "error: cannot read train.run_dir from $config (fix the config, or set SRPO_RUN_DIR)" >&2
    return 2
  }
  SRPO_LOG_DIR="$SRPO_RUN_DIR_ABS/logs/slurm-${SRPO_JOB_ID}-r${SRPO_RESTART}"
  srpo_export_env
  srpo_build_command "$config" "$@"
  if ((print_only)); then
    local var
    for var in NCCL_DEBUG TORCH_NCCL_ASYNC_ERROR_HANDLING CUDA_DEVICE_MAX_CONNECTIONS OMP_NUM_THREADS \
      TORCH_ELASTIC_SHUTDOWN_TIMEOUT; do
      echo "export $var=${!var}"
    done
    printf '%q ' "${SRPO_SRUN_CMD[@]}" "${SRPO_TORCHRUN_CMD[@]}"
    echo
    return 0
  fi
  srpo_run "$config" "$@"
}

srpo_run() {
  local config=$1
  shift
  mkdir -p "$SRPO_LOG_DIR"
  srpo_log "job $SRPO_JOB_ID (restart $SRPO_RESTART) on $SRPO_NNODES node(s) x $SRPO_GPUS GPUs: $SRPO_NODELIST"
  srpo_log "run dir $SRPO_RUN_DIR_ABS; per-node logs in $SRPO_LOG_DIR; latest checkpoint: $(srpo_latest_checkpoint)"
  if [[ "${SRPO_PREFLIGHT:-1}" != 0 ]]; then
    (cd "$SRPO_ROOT" && "$SRPO_PYTHON" pretrain_srpo.py --config "$config" "$@" --dry-run --nodes "$SRPO_NNODES" \
      --gpus-per-node "$SRPO_GPUS") >"$SRPO_LOG_DIR/dry-run.txt" 2>&1 || {
      srpo_log "preflight failed: the config does not fit this allocation (see $SRPO_LOG_DIR/dry-run.txt):"
      cat "$SRPO_LOG_DIR/dry-run.txt"
      return 2
    }
  fi
  if ! (cd "$SRPO_ROOT" && "$SRPO_PYTHON" -m torch.distributed.run --help 2>/dev/null) | grep -q -- --shutdown-timeout; then
    srpo_log "warning: this torchrun ignores TORCH_ELASTIC_SHUTDOWN_TIMEOUT and SIGKILLs ranks 30 s after SIGTERM;" \
      "a longer save is lost and the resume falls back to the previous periodic checkpoint"
  fi
  srpo_log "command: ${SRPO_SRUN_CMD[*]} ${SRPO_TORCHRUN_CMD[*]}"

  SRPO_STOP_REASON=""
  trap srpo_on_usr1 USR1
  trap srpo_on_usr2 USR2
  trap srpo_on_term TERM
  local before rc=0 pid decision
  before=$(srpo_latest_checkpoint)
  "${SRPO_SRUN_CMD[@]}" "${SRPO_TORCHRUN_CMD[@]}" &
  pid=$!
  # `wait` returns early (> 128) when a trapped signal arrives; keep waiting until srun has really ended.
  while :; do
    wait "$pid" && rc=0 || rc=$?
    kill -0 "$pid" 2>/dev/null || break
  done
  wait "$pid" 2>/dev/null && rc=0 || rc=$?

  local after
  after=$(srpo_latest_checkpoint)
  srpo_log "step ended with exit code $rc (torchrun reports 1 when its ranks stopped on a signal);" \
    "latest checkpoint: $after$([[ "$after" != "$before" ]] && echo " (new)")"
  decision=$(srpo_should_requeue "$SRPO_STOP_REASON" "$rc" "$SRPO_RESTART" "${SRPO_MAX_REQUEUES:-20}")
  if [[ "$decision" == yes ]]; then
    srpo_log "requeueing job $SRPO_JOB_ID; it resumes from $after"
    scontrol requeue "$SRPO_JOB_ID"
    return 0
  fi
  srpo_log "not requeueing: ${decision#no: }"
  [[ -n "$SRPO_STOP_REASON" ]] && return 0
  return "$rc"
}
