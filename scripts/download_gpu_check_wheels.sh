#!/usr/bin/env bash
# Download the wheels of requirements/gpu-check-wheels.txt for the GPU machine (CPython 3.12, manylinux x86-64)
# into DIR (default wheels/, git-ignored), then print their total size. Needs the package registry (run it here,
# not on the GPU machine); the GPU check installs them with pip --no-index --no-deps.
#     bash scripts/download_gpu_check_wheels.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-wheels}"
mkdir -p "$dir"
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
"$python" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dir" -r requirements/gpu-check-wheels.txt
ls -l "$dir"/*.whl
du -ch "$dir"/*.whl | tail -1
