"""Tiny HF Qwen2 checkpoints for the rollout tests: the shared tiny model (tests/fixtures/tiny_model.py, head_dim 32
as vLLM-CPU requires) and its tied-embedding variant (Qwen2.5-0.5B style)."""

from pathlib import Path

import pytest

from tests.fixtures.tiny_model import build_tiny_hf_checkpoint


@pytest.fixture(scope="session")
def rollout_hf_dir(tiny_hf_dir) -> Path:
    return tiny_hf_dir


@pytest.fixture(scope="session")
def rollout_hf_dir_tied(tmp_path_factory) -> Path:
    return build_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny_hf_tied"), tied=True)
