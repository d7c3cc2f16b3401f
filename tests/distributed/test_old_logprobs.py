"""The on-policy fast path (``train.old_logprobs=auto``: old log-probs from the training forward, detached) equals
the separate forward-only pass (``recompute``) for the real Policy at TP1 (DP2), TP2 and PP2, through the fused LM
head and the logits path, with TIS, dual clip, a seq-mean aggregation and a KL reference (one 2-rank gloo launch),
and that the step's metrics hold exactly the loss terms the configuration computes (TIS, dual clip, KL).

The rank code is tests/distributed/workers/old_logprobs.py; here we assert on what it found. Measured on CPU (fp32,
torch backend): every difference is exactly 0 (the same forward numerics with and without autograd), so the bounds
below are tight fp32-rounding bounds, not the packing tests' Adam-amplified ones. The negative control (recomputed
old log-probs shifted by 0.05 nats) moves the gradients by 3-8% of each parameter's largest entry and the weights by
2e-3 (Adam's ~2 lr).
"""

import json

import pytest

from tests.torchrun import REPO_ROOT, run_torchrun

pytestmark = pytest.mark.distributed
WORKER = REPO_ROOT / "tests/distributed/workers/old_logprobs.py"
CASES = ["tp1_fused", "tp1_logits", "tp2_fused", "tp2_logits", "tp2_fused_kl", "pp2_fused"]


@pytest.fixture(scope="module")
def findings(tiny_hf_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("old_logprobs") / "findings.json"
    run_torchrun(WORKER, 2, "--hf", str(tiny_hf_dir), "--out", str(out), timeout=900,
                 env={"PYTHONPATH": str(REPO_ROOT)})  # the worker imports the parity worker's rollout_samples
    return json.loads(out.read_text())


@pytest.mark.parametrize("case", CASES)
def test_old_logprobs_from_the_training_forward_equal_the_separate_pass(findings, case):
    """Loss metrics, the guard's statistics over WORLD (mean/max |delta|, fraction outside [0.5, 2], token count),
    the trainer's log-probs it judged, every parameter's gradient on every rank and the updated weights."""
    ranks = findings[case]
    assert len(ranks) == 2 and sum(r["tokens"] for r in ranks) > 0  # PP2: the first stage holds no log-probs
    for r in ranks:
        assert r["metric_keys"] is not None and "loss/pg_loss" in r["metric_keys"], r
        # every metric the configured loss computes is logged, and none it does not compute
        assert ("loss/tis_clip_frac" in r["metric_keys"]) == (case != "tp2_fused_kl"), r["metric_keys"]
        assert ("loss/dual_clip_frac" in r["metric_keys"]) == (case == "tp1_logits"), r["metric_keys"]
        assert ("loss/kl_loss" in r["metric_keys"]) == (case == "tp2_fused_kl"), r["metric_keys"]
        assert r["metrics"] <= 1e-6 and r["guard"] <= 1e-9 and r["trainer_logprobs"] <= 1e-6, r
        assert r["grad_rel"] <= 1e-6 and r["weights"] <= 1e-6, r
        assert r["zero_grads"] == [], r
        mean_abs, max_abs, outside, tokens = r["guard_stats"]
        assert 0.1 < mean_abs < max_abs and tokens == ranks[0]["guard_stats"][3], r  # same verdict on every rank
        assert r["approx_kl"] == pytest.approx(0.0, abs=1e-7), r  # on-policy: ratio 1


@pytest.mark.parametrize("case", CASES)
def test_shifted_old_logprobs_change_the_update(findings, case):
    # Negative control: the comparison above can tell a wrong old log-prob (ratio != 1) from the right one.
    for r in findings[f"{case}/old_shifted"]:
        assert r["grad_rel"] > 1e-2 and r["weights"] > 1e-3 and r["metrics"] > 0.1, r
