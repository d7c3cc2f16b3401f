#!/usr/bin/env bash
# The GPU check in one command (see tools/gpu_check/check.py and docs/benchmarks.md):
#     bash scripts/gpu_check.sh --wheels wheels --out "$OUT"
# On a GPU machine it runs the kernel tests, the kernel benchmark at the target shapes and a trainer replay in bf16
# within 8 minutes, and writes results.json + summary.txt to --out (or $OUT). --mode cpu is the CPU rehearsal.
set -uo pipefail
cd "$(dirname "$0")/.."
# The project's venv where there is one (the CPU rehearsal here); the image's python3 on a bare GPU machine.
python="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
exec "$python" tools/gpu_check/check.py "$@"
