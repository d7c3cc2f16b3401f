"""The vocab-parallel kernels at TP2 (one 2-rank gloo launch) equal the single-rank fp64 reference.

The rank code is tests/kernels/workers/tp2_kernels.py: it runs log-probs, the fused LM head and the GRPO loss
on each rank's vocab shard with both backends (Triton in the interpreter, torch) and reports the normwise
relative error of every output and gradient against the full-vocabulary fp64 reference.
"""

import json

import pytest

from tests.kernels.helpers import RTOL
from tests.torchrun import REPO_ROOT, run_torchrun

pytestmark = pytest.mark.distributed
WORKER = REPO_ROOT / "tests/kernels/workers/tp2_kernels.py"

EXPECTED = [
    *(f"logprobs/{b}/{q}" for b in ("triton", "torch") for q in ("logp", "entropy", "grad_logits")),
    *(f"fused_linear/{b}/{q}" for b in ("triton", "torch")
      for q in ("logp", "entropy", "grad_hidden", "grad_weight")),
    "fused_linear/triton-no-reduce/grad_hidden",
    *(f"grpo/{b}/{q}" for b in ("triton", "torch") for q in ("loss", "grad_logits", "metrics")),
]


@pytest.fixture(scope="module")
def findings(tmp_path_factory):
    out = tmp_path_factory.mktemp("tp2") / "findings.json"
    run_torchrun(WORKER, 2, "--out", str(out), timeout=300, env={"PYTHONPATH": str(REPO_ROOT)})
    return json.loads(out.read_text())


def test_every_check_ran(findings):
    assert sorted(findings) == sorted(EXPECTED)


@pytest.mark.parametrize("check", EXPECTED)
def test_tp2_matches_single_rank_fp64_reference(findings, check):
    assert findings[check] <= RTOL, f"{check}: normwise relative error {findings[check]:.3e}"
