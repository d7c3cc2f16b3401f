"""Qwen2.5 on Megatron-Core equals HF transformers, at TP1, TP2 and TP2xPP2, with and without sequence parallelism
(one 4-rank gloo launch); the trainer's fused LM-head loss path equals its logits path there.

The rank code is tests/distributed/workers/qwen2_parity.py; here we assert on what it found.
"""

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.torchrun import REPO_ROOT, run_torchrun

pytestmark = pytest.mark.distributed
WORKER = REPO_ROOT / "tests/distributed/workers/qwen2_parity.py"
TOL = 1e-4


@pytest.fixture(scope="module")
def findings(tiny_hf_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("parity")
    out = work / "findings.json"
    run_torchrun(WORKER, 4, "--hf", str(tiny_hf_dir), "--work", str(work), "--out", str(out), timeout=1200,
                 env={"PYTHONPATH": str(REPO_ROOT)})  # the worker imports tests.rollout.megatron_logprobs
    return json.loads(out.read_text()), work


@pytest.mark.parametrize("layout", ["tp1pp1", "tp2pp1", "tp2pp2"])
def test_logits_match_hf(findings, layout):
    result = findings[0][layout]
    assert result["max_abs_diff"] <= TOL, result
    assert result["argmax_equal"], result


def test_padded_vocab_rows_are_zero(findings):
    # Megatron's padded embedding/output rows (vocab 200 -> 224) carry no weight, so their logits are 0;
    # the log-prob kernels exclude them from the softmax altogether.
    for layout in ("tp1pp1", "tp2pp1", "tp2pp2"):
        assert findings[0][layout]["padded_cols_max_abs"] == 0.0


def test_wrong_qkv_layout_is_caught(findings):
    # Negative control: a plain cat(q, k, v) fusion must break parity by far more than the tolerance.
    result = findings[0]["tp2pp1_wrong_qkv"]
    assert result["max_abs_diff"] > 100 * TOL, result


def test_tp2pp2_checkpoint_loads_at_tp1pp1(findings):
    result = findings[0]["tp1pp1_from_tp2pp2_ckpt"]
    assert result["max_abs_diff"] <= TOL and result["argmax_equal"], result


def test_hf_export_from_tp2pp2_is_bit_exact(findings, tiny_hf_dir):
    original = load_file(tiny_hf_dir / "model.safetensors")
    index = json.loads((findings[1] / "hf_export" / "model.safetensors.index.json").read_text())["weight_map"]
    exported = {}
    for file in set(index.values()):
        exported.update(load_file(findings[1] / "hf_export" / file))
    assert sorted(exported) == sorted(original)
    for name, tensor in original.items():
        assert torch.equal(exported[name], tensor), name


def test_tied_embeddings_build_and_run_under_pipeline_parallelism(findings):
    assert findings[0]["tp2pp2_tied_finite"] is True


def test_adamw_steps_reduce_fixed_batch_loss_at_tp2(findings):
    losses = findings[0]["train_losses"]
    assert len(losses) == 6
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.9 * losses[0], losses


# ------------------------------------------------------------------------- sequence parallelism (local spec, CPU)


@pytest.mark.parametrize("layout", ["sp_tp2pp1", "sp_tp2pp2"])
def test_sequence_parallel_logits_match_hf(findings, layout):
    result = findings[0][layout]
    assert result["max_abs_diff"] <= TOL and result["argmax_equal"], result
    assert result["padded_cols_max_abs"] == 0.0


@pytest.mark.parametrize("layout", ["sp_tp2pp1", "sp_tp2pp2"])
def test_sequence_parallel_logprobs_of_odd_lengths_match_hf(findings, layout):
    # lengths 11 and 9 at TP2: megatron_logprobs pads them to a multiple of 2
    assert findings[0][f"{layout}_odd_logprobs_max_abs_diff"] <= TOL


def test_sequence_parallel_refuses_an_unpadded_micro_batch(findings):
    assert "micro-batch lengths [11] must be multiples of 2" in findings[0]["sp_odd_length_refused"]


def test_srpo_train_step_with_sequence_parallelism_equals_without(findings):
    result = findings[0]["sp_train_step"]
    # each DP rank packs two samples into one row of 15 tokens (9 + 6, 8 + 7); the builder padded it to 16 for SP
    assert result["shapes"] == {"tp": [[1, 15]], "sp": [[1, 16]]}, result
    for key, (tp, sp) in result["metrics"].items():
        assert sp == pytest.approx(tp, abs=1e-5), key
    # every gradient the optimizer receives (DP-summed; SP's norm-weight gradients TP-summed) equals TP's
    assert result["grad_max_abs_diff"] <= 1e-6 * max(1.0, result["grad_max_abs"]), result
    # negative control: without the TP all-reduce of the norm weights' gradients they are partial sums
    assert result["no_norm_grad_reduction_grad_max_abs_diff"] > 100 * result["grad_max_abs_diff"] + 1e-4, result
# ------------------------------------------------------------------ the trainer's loss path: fused LM head vs logits
LOSS_PATHS = ["tp1pp1/fused", "tp1pp1/fused_triton", "tp2pp1/fused", "tp2pp1/fused_triton", "tp2pp2_kl/fused",
              "tp2pp2_tied/fused", "tp2pp2_tied/fused_triton", "tp1pp1_tied/fused"]


@pytest.mark.parametrize("case", LOSS_PATHS)
def test_fused_lm_head_equals_logits_path(findings, case):
    """Policy.compute_logprobs + train_step (fp32) through the fused LM head vs Megatron's logits: the trainer's
    log-probs, the reference model's, every loss metric (loss, clip fractions, entropy, KL, grad norm), every
    parameter's gradient on every rank (relative to that parameter's largest) and the updated weights agree."""
    ranks = findings[0]["loss_path"][case]
    assert len(ranks) == 4
    for r in ranks:
        assert r["logprobs"] <= 1e-5 and r["ref_logprobs"] <= 1e-5, r
        assert r["metrics"] <= 1e-5, r
        assert r["grad_rel"] <= 1e-5, r
        assert r["weights"] <= 1e-3, r  # Adam at lr 1e-3 turns fp32 noise on near-zero gradients into up to ~lr
        assert r["zero_grads"] == [], r  # every parameter (embedding and output weight too) got a gradient
        logits_calls, fused_calls = r["output_layer_calls"]
        assert fused_calls == 0, r  # the [tokens, V/TP] logits were never made
    last_stage = [r for r in ranks if r["tokens"] > 0]
    assert last_stage and all(r["output_layer_calls"][0] > 0 for r in last_stage)
    # the step exercised the loss: both clip sides, and the KL reference where configured
    assert ranks[0]["clip_low"] > 0 and ranks[0]["clip_high"] > 0
    assert all(r["has_ref"] for r in last_stage) == case.startswith("tp2pp2_kl")


def test_fused_lm_head_parity_catches_a_missing_tp_gradient_reduction(findings):
    # Negative control: at TP2 the fused head's hidden-state gradient left unsummed over the TP ranks shows up in
    # every decoder gradient, far above the parity tolerance.
    for r in findings[0]["loss_path"]["tp2pp1/fused_no_tp_reduce"]:
        assert r["grad_rel"] > 0.1 and r["logprobs"] <= 1e-5, r


# ------------------------------------------------------------ packed micro-batches vs one sample per padded row
@pytest.mark.parametrize("layout", ["tp1pp1", "tp2pp1", "tp2pp2", "sp_tp2pp1"])
def test_packed_micro_batches_equal_one_sample_per_padded_row(findings, layout):
    """Policy.compute_logprobs + train_step (fp32, fused LM head) on the trainer's packed rows vs the same samples one
    per right-padded row through Megatron's unmodified core attention: log-probs, the KL reference's, every loss
    metric, every parameter's gradient on every rank and the updated weights agree."""
    ranks = findings[0]["packing"][layout]
    assert len(ranks) == 4 and any(r["tokens"] > 0 for r in ranks)
    for r in ranks:
        assert r["logprobs"] <= 1e-5 and r["ref_logprobs"] <= 1e-5, r
        assert r["metrics"] <= 5e-5, r  # measured <= 1.4e-5 (grad norm; sums in another order than the padded rows)
        assert r["grad_rel"] <= 1e-5, r
        # Adam at lr 1e-3 turns fp32 noise on near-zero gradients into up to ~lr per weight (measured <= 3.7e-4)
        assert r["weights"] <= 1e-3, r
        assert r["zero_grads"] == [], r
    assert all(r["has_ref"] for r in ranks if r["tokens"] > 0) == (layout == "tp2pp2")


def test_packing_parity_catches_attention_across_samples(findings):
    # Negative control: the same packed rows with the boundaries dropped (one causal segment per row) differ.
    for r in findings[0]["packing"]["tp1pp1_without_boundaries"]:
        assert r["tokens"] == 0 or r["logprobs"] > 1e-2, r


def test_each_new_layout_frees_the_process_groups_of_the_last(findings):
    # The worker re-initialises Megatron for ~20 layouts on 4 ranks. Without srpo_mcore.distributed freeing the
    # groups Megatron created (its destroy_model_parallel only forgets them), ~700 stayed alive per rank, each
    # gloo group with its own threads (~2,000 per rank, load averages of several hundred while this file ran).
    # Measured: 694-704 per rank before, 24 (one layout's groups and the default) after.
    live = [v for k, v in findings[0].items() if k.startswith("live_process_groups_rank")]
    assert len(live) == 4 and max(live) <= 60, live
