"""The TRL environment: a separate venv with the exact pins of requirements-trl.txt, built once and reused.

torch comes from the on-disk CPU wheel (``pip install torch==2.13.0``; a plain ``torch`` from the registry is a CUDA
build of several GB), then everything else with exact pins. The venv records the hash of what it was built from
(``.srpo-trl-requirements``); a venv whose record differs is rebuilt.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements-trl.txt"
FIRST = ["torch==2.13.0", "numpy==2.2.6"]  # before the rest, so nothing pulls a CUDA torch
STAMP = ".srpo-trl-requirements"


def wanted_stamp() -> str:
    return hashlib.sha256((" ".join(FIRST) + "\n" + REQUIREMENTS.read_text()).encode()).hexdigest()


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_current(venv: Path) -> bool:
    stamp = venv / STAMP
    return python_of(venv).is_file() and stamp.is_file() and stamp.read_text().strip() == wanted_stamp()


def ensure_venv(venv: Path) -> Path:
    """The venv's python, building (or rebuilding) the venv when it is missing or was built from other pins."""
    if is_current(venv):
        print(f"TRL venv {venv}: reused (pins match)", flush=True)
        return python_of(venv)
    if venv.exists():
        print(f"TRL venv {venv}: built from other pins, rebuilding", flush=True)
        shutil.rmtree(venv)
    print(f"TRL venv {venv}: building from {REQUIREMENTS.name}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python_of(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *FIRST], check=True)
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    (venv / STAMP).write_text(wanted_stamp() + "\n")
    return python_of(venv)
