"""Fixtures for the reward tests: the shared data directory, one bubblewrap sandbox and one math pool per
module (both are real: bubblewrap, math-verify; nothing is mocked)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from srpo_mcore.rewards.sandbox import Sandbox, SandboxLimits, choose_python, probe_bwrap
from tests.fixtures.shared_data import REPO_ROOT
from tests.fixtures.shared_data import shared_data_dir as shared_data

REPO = REPO_ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data()
    if path is None:
        pytest.skip("shared data (../shared/data) is absent")
    return path


@pytest.fixture(scope="session")
def bwrap_available() -> bool:
    ok, why = probe_bwrap(choose_python("", 65534), 65534)
    if not ok:
        pytest.skip(f"bubblewrap cannot create namespaces here: {why}")
    return True


# Tight limits keep the hostile tests quick; correct programs need far less.
TEST_LIMITS = SandboxLimits(cpu_seconds=1.0, wall_seconds=2.0, total_wall_seconds=20.0, memory_mb=512,
                            output_bytes=64 << 10, max_processes=16, file_size_mb=4, tmpfs_mb=16)


@pytest.fixture(scope="module")
def sandbox(bwrap_available):
    with Sandbox(TEST_LIMITS, backend="bwrap") as box:
        yield box


@pytest.fixture(scope="module")
def fallback_sandbox():
    logging.getLogger("srpo_mcore.rewards.sandbox").setLevel(logging.CRITICAL)  # the loud warning is expected
    with Sandbox(TEST_LIMITS, backend="rlimits") as box:
        yield box
