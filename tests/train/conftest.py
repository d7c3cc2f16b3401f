"""A pretrained arithmetic base for trainer tests: single-digit sums, learnt in ~150 steps (~30 s on 2 cores),
so SRPO steps see groups with mixed outcomes (the History Resampling and advantage paths do real work)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.torchrun import REPO_ROOT, run_isolated, torchrun_command


@pytest.fixture(scope="session")
def arith_base(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("arith")
    data = root / "data"
    subprocess.run([sys.executable, "-m", "srpo_mcore.quickstart.arithmetic", "--out", str(data), "--train", "80",
                    "--heldout", "16", "--max-operand", "9"], cwd=REPO_ROOT, check=True, capture_output=True)
    cmd = torchrun_command(2, "-m", "srpo_mcore.quickstart.pretrain", "--out", str(root / "base"), "--steps", "150",
                           "--max-operand", "9", "--eval-problems", "16", "--batch-size", "32")
    proc = run_isolated(cmd, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"base": root / "base", "train": data / "train.jsonl", "heldout": data / "heldout.jsonl"}
