"""The GPU check's CPU rehearsal (tools/gpu_check/check.py --mode cpu): every part runs end to end, as on the GPU
machine but with the Triton interpreter, fp32, tiny shapes and gloo, so the one-command check cannot rot between
the rare GPU loans. The replay part replays the committed fixture's rollouts (tools/gpu_check/fixture) with both
kernel backends and must match the fixture's recorded CPU losses."""

import json
import os
import subprocess
import sys

import pytest

from tests.torchrun import REPO_ROOT, run_isolated

pytestmark = pytest.mark.slow


def test_cpu_rehearsal_runs_every_part(tmp_path):
    out = tmp_path / "out"
    proc = run_isolated(["bash", "scripts/gpu_check.sh", "--mode", "cpu", "--out", str(out)], timeout=600,
                        env={"PYTHON": sys.executable})
    results = json.loads((out / "results.json").read_text())
    assert proc.returncode == 0, (out / "summary.txt").read_text() + proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {name: part["status"] for name, part in results["parts"].items()} == {
        "setup": "pass", "environment": "pass", "kernel_tests": "pass", "benchmark": "skipped", "replay": "pass"}
    replay = results["parts"]["replay"]["details"]
    assert replay["torch"]["comparison"]["steps"] == 3 and replay["triton"]["comparison"]["steps"] == 1
    for backend in ("torch", "triton"):
        assert replay[backend]["comparison"]["ok"] and replay[backend]["checkpoint"] is not None
    assert results["parts"]["kernel_tests"]["details"]["tests"] > 0
    assert (out / "summary.txt").read_text().startswith("srpo-mcore GPU check (cpu mode)")
    assert (out / "kernels_junit.xml").is_file() and (out / "logs.txt").is_file()
    assert len(list(out.iterdir())) <= 8  # the device tool brings back at most 8 files from $OUT


def test_a_hanging_part_is_killed_at_its_deadline_and_reported(tmp_path):
    """The budget is per part: a part that outlives it is killed, marked failed, and the others still report."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "tools/gpu_check/check.py", "--mode", "cpu", "--out", str(out),
                           "--parts", "environment,kernel_tests", "--budget", "10"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SRPO_GPU_CHECK_HANG": "environment"})
    assert proc.returncode == 1
    parts = json.loads((out / "results.json").read_text())["parts"]
    assert parts["setup"]["status"] == "pass"
    assert parts["environment"]["status"] == "fail" and "timed out after" in parts["environment"]["error"]
    assert parts["kernel_tests"]["status"] == "skipped" and "budget" in parts["kernel_tests"]["error"]
    assert parts["benchmark"]["status"] == "skipped" and parts["replay"]["status"] == "skipped"
