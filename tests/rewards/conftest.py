"""Fixtures for the reward tests: one bubblewrap sandbox and one rlimits sandbox per module (both real; nothing
is mocked). The shared data directory is the root conftest's ``shared_data``."""

from __future__ import annotations

import logging

import pytest

from srpo_mcore.rewards.sandbox import Sandbox, SandboxLimits, choose_python, probe_bwrap
from tests.fixtures.shared_data import REPO_ROOT

REPO = REPO_ROOT


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
