"""Test-session set-up: the CPU platform environment (Triton interpreter etc.) before anything imports it,
the shared tiny model, and a pretrained arithmetic base model (single-digit sums, partly learnt in 80 steps, so
SRPO/eval runs see mixed outcomes)."""

import subprocess
import sys
from pathlib import Path

import pytest

from srpo_mcore.platform import configure_process_environment
from tests.fixtures.shared_data import shared_data_dir
from tests.torchrun import REPO_ROOT, run_isolated, torchrun_command

configure_process_environment()


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    """HF checkpoint of the shared tiny Qwen2 model (+ reference_logits.pt computed by transformers)."""
    from tests.fixtures.tiny_model import build_tiny_hf_checkpoint

    return build_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny_hf"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The public benchmark samples (../shared/data); tests using them skip only when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared/data is not present beside the checkout")
    return path


@pytest.fixture(scope="session")
def arith_base(tmp_path_factory) -> dict[str, Path]:
    """A briefly pretrained arithmetic model (HF dir with tokenizer) and its train / held-out files, math and
    code."""
    root = tmp_path_factory.mktemp("arith")
    data = root / "data"
    subprocess.run([sys.executable, "-m", "srpo_mcore.quickstart.arithmetic", "--out", str(data), "--train", "80",
                    "--heldout", "16", "--max-operand", "9"], cwd=REPO_ROOT, check=True,
                   capture_output=True)
    cmd = torchrun_command(2, "-m", "srpo_mcore.quickstart.pretrain", "--out", str(root / "base"), "--tp", "2",
                           "--steps", "80", "--max-operand", "9", "--eval-problems", "16", "--batch-size", "32")
    proc = run_isolated(cmd, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"base": root / "base", "train": data / "train.jsonl", "heldout": data / "heldout.jsonl",
            "code_train": data / "code_train.jsonl", "code_heldout": data / "code_heldout.jsonl"}
