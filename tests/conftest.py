"""Test-session set-up: the CPU platform environment (Triton interpreter etc.) before anything imports it,
and the shared tiny model."""

from pathlib import Path

import pytest

from srpo_mcore.platform import configure_process_environment

configure_process_environment()


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    """HF checkpoint of the shared tiny Qwen2 model (+ reference_logits.pt computed by transformers)."""
    from tests.fixtures.tiny_model import build_tiny_hf_checkpoint

    return build_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny_hf"))
