"""Every Triton kernel compiles for an H100 (sm_90), checked on this CPU machine.

The interpreter runs kernels without type-checking or lowering them, so GPU-only compile errors would
otherwise surface only on a GPU. tests/kernels/workers/compile_sm90.py runs Triton's compiler to a cubin
(ptxas ships with triton) in a process without TRITON_INTERPRET.
"""

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.torchrun import REPO_ROOT

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton.backends.nvidia") is None,
                                reason="this triton build has no NVIDIA backend")


def test_kernels_compile_for_sm90(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # compile for real, and leave no cache in the home directory
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # the default; set to silence Triton 3.9's notice
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tests/kernels/workers/compile_sm90.py")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "ALL KERNELS COMPILED" in proc.stdout
    assert all("spill_stores=0B" in line for line in proc.stdout.splitlines() if line.startswith("OK"))
