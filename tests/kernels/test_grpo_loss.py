"""GRPO/DAPO policy loss: the reference against hand formulas, then the Triton path against the reference.

Part 1 checks the reference loss (``grpo_loss_from_logprobs``) on tokens whose values are written out by
hand, with the textbook PPO form ``-min(r A, clip(r) A)`` evaluated case by case in plain Python.
Part 2 compares the fused Triton path (interpreter on CPU) with the fp64 reference on logits.
"""

from __future__ import annotations

import math

import pytest
import torch
from srpo_kernels.grpo_loss import grpo_loss, token_weights
from srpo_kernels.grpo_loss_reference import GRPOLossConfig, grpo_loss_from_logprobs, reference_grpo_loss
from srpo_kernels.logprobs_reference import reference_logprobs

from tests.kernels.helpers import assert_rel_close, generator, gpu_bf16_case, special_targets

# ------------------------------------------------------------------------------ part 1: hand formulas


def hand_pg(ratio: float, adv: float, eps_low: float, eps_high: float, dual_c: float | None = None) -> float:
    """Per-token PPO loss written case by case: -A * min(r, 1+eps_high) for A >= 0, -A * max(r, 1-eps_low)
    for A < 0 (the pessimistic side of the clipped surrogate), then the dual-clip bound for A < 0."""
    loss = -adv * min(ratio, 1 + eps_high) if adv >= 0 else -adv * max(ratio, 1 - eps_low)
    if dual_c is not None and adv < 0:
        loss = min(loss, -adv * dual_c)
    return loss


# token:      1: unclipped only with clip-higher   2: clipped low   3: clipped high   4: dual-clipped   5: masked
RATIOS = [1.25, 0.75, 1.5, 4.0, 1.0]
ADVS = [1.0, -1.0, 0.5, -2.0, 3.0]
MASK = [True, True, True, True, False]
SEQS = [0, 0, 0, 1, 1]


def hand_case(dtype=torch.float64):
    old = torch.tensor([-1.0, -2.0, -0.5, -3.0, 0.0], dtype=dtype)
    logp = old + torch.log(torch.tensor(RATIOS, dtype=dtype))
    logp[4] = float("-inf")  # a masked token may have any log-prob (e.g. a padded target)
    return logp, old, torch.tensor(ADVS, dtype=dtype), torch.tensor(MASK), torch.tensor(SEQS)


def reference_on_hand_case(config, **kwargs):
    logp, old, adv, mask, seqs = hand_case()
    logp.requires_grad_(True)
    loss, metrics = grpo_loss_from_logprobs(logp, None, old, adv, mask, None, None, seqs, config=config, **kwargs)
    (grad,) = torch.autograd.grad(loss, [logp])
    return loss.item(), metrics, grad


def test_reference_token_mean_uses_the_global_token_count_and_clip_higher():
    cfg = GRPOLossConfig(clip_eps_low=0.2, clip_eps_high=0.28, dual_clip_c=3.0)
    loss, metrics, grad = reference_on_hand_case(cfg, num_global_tokens=10)
    per_token = [hand_pg(r, a, 0.2, 0.28, 3.0) for r, a in zip(RATIOS[:4], ADVS[:4])]
    assert per_token == pytest.approx([-1.25, 0.8, -0.64, 6.0])
    assert loss == pytest.approx(sum(per_token) / 10, rel=1e-12)  # 10 tokens in the whole step, not 4 here
    # only token 1 is unclipped: d/dlogp (-A r) = -A r; clipped, dual-clipped and masked tokens get 0
    assert grad.tolist() == pytest.approx([-1.25 / 10, 0, 0, 0, 0], abs=1e-12)
    assert metrics["clip_frac_low"].item() == pytest.approx(0.1)
    assert metrics["clip_frac_high"].item() == pytest.approx(0.1)
    assert metrics["dual_clip_frac"].item() == pytest.approx(0.1)
    assert metrics["pg_loss"].item() == pytest.approx(loss)

    # symmetric clipping (vanilla PPO/GRPO) clips token 1 too: the clip-higher asymmetry is what kept it
    sym_loss, sym_metrics, sym_grad = reference_on_hand_case(
        GRPOLossConfig(clip_eps_low=0.2, clip_eps_high=0.2, dual_clip_c=3.0), num_global_tokens=10)
    assert sym_loss == pytest.approx((-1.2 + 0.8 - 0.6 + 6.0) / 10, rel=1e-12)
    assert sym_grad[0] == 0 and sym_metrics["clip_frac_high"].item() == pytest.approx(0.2)


def test_reference_sequence_modes_differ_from_token_mean_on_unequal_lengths():
    per_token = [hand_pg(r, a, 0.2, 0.28) for r, a in zip(RATIOS[:4], ADVS[:4])]  # no dual clip: 8.0 for token 4
    seq0, seq1 = per_token[:3], per_token[3:]  # lengths 3 and 1 (token 5 is masked)
    expected = {
        "token-mean": sum(per_token) / 4,
        "seq-mean-token-sum": (sum(seq0) + sum(seq1)) / 2,
        "seq-mean-token-mean": (sum(seq0) / 3 + sum(seq1) / 1) / 2,
    }
    got = {mode: reference_on_hand_case(GRPOLossConfig(loss_agg_mode=mode))[0] for mode in expected}
    for mode in expected:
        assert got[mode] == pytest.approx(expected[mode], rel=1e-12), mode
    assert len({round(v, 9) for v in got.values()}) == 3  # negative case: the three modes disagree here
    # the global sequence count divides the sequence modes
    loss, _, _ = reference_on_hand_case(GRPOLossConfig(loss_agg_mode="seq-mean-token-mean"), num_global_seqs=8)
    assert loss == pytest.approx(expected["seq-mean-token-mean"] * 2 / 8, rel=1e-12)


def test_reference_kl_tis_and_entropy_terms_by_hand():
    logp = torch.tensor([-1.0, -2.0], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([-1.1, -1.8], dtype=torch.float64)
    adv = torch.tensor([1.0, -0.5], dtype=torch.float64)
    ref = torch.tensor([-0.7, -2.5], dtype=torch.float64)
    rollout = old - torch.log(torch.tensor([3.0, 0.5], dtype=torch.float64))  # IS weights 3 (capped to 2), 0.5
    entropy = torch.tensor([2.0, 1.5], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([True, True])
    cfg = GRPOLossConfig(kl_coef=0.1, entropy_coef=0.01, tis_cap=2.0)
    loss, metrics = grpo_loss_from_logprobs(logp, entropy, old, adv, mask, ref, rollout, None, config=cfg)

    def k3(x):
        return math.exp(x) - x - 1

    expected = []
    for i, w in enumerate((2.0, 0.5)):
        r = math.exp(logp[i].item() - old[i].item())
        pg = hand_pg(r, adv[i].item(), 0.2, 0.28) * w
        expected.append(pg + 0.1 * k3(ref[i].item() - logp[i].item()) - 0.01 * entropy[i].item())
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-12)
    assert metrics["kl_loss"].item() == pytest.approx((k3(0.3) + k3(-0.5)) / 2, rel=1e-12)
    assert metrics["tis_clip_frac"].item() == pytest.approx(0.5)
    assert metrics["entropy"].item() == pytest.approx(1.75)
    assert metrics["approx_kl"].item() == pytest.approx((k3(0.1) + k3(-0.2)) / 2, rel=1e-12)
    g_logp, g_ent = torch.autograd.grad(loss, [logp, entropy])
    assert g_ent.tolist() == pytest.approx([-0.005, -0.005])
    # token 1: unclipped (r = e^0.1 < 1.28), weight 2: d/dl[-A r w + 0.1 k3(ref - l)] = -A r w + 0.1 (1 - e^(ref-l))
    r0 = math.exp(0.1)
    assert g_logp[0].item() == pytest.approx((-1.0 * r0 * 2 + 0.1 * (1 - math.exp(0.3))) / 2, rel=1e-12)


def test_micro_batches_with_global_counts_add_up_to_the_full_batch():
    gen = generator(5)
    logits = torch.randn(6, 5, 40, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 40, (6, 5), generator=gen)
    old, adv = -torch.rand(6, 5, generator=gen, dtype=torch.float64) * 4, torch.randn(6, 5, generator=gen)
    mask = torch.rand(6, 5, generator=gen) > 0.3
    mask[:, 0] = True
    for mode in ("token-mean", "seq-mean-token-mean"):
        cfg = GRPOLossConfig(loss_agg_mode=mode)
        counts = dict(num_global_tokens=mask.sum().item(), num_global_seqs=6)
        full, full_metrics = reference_grpo_loss(logits, targets, old, adv, mask, config=cfg)
        parts = [reference_grpo_loss(logits[s], targets[s], old[s], adv[s], mask[s], config=cfg, **counts)
                 for s in (slice(0, 2), slice(2, 6))]
        assert sum(p[0] for p in parts).item() == pytest.approx(full.item(), rel=1e-12)
        for name in full_metrics:
            assert sum(p[1][name] for p in parts).item() == pytest.approx(full_metrics[name].item(), rel=1e-12)


def test_token_weights_match_the_modes():
    mask = torch.tensor([1, 1, 0, 1, 1, 1], dtype=torch.bool)
    seqs = torch.tensor([0, 0, 0, 1, 1, 2])
    tok, metric = token_weights(mask, GRPOLossConfig(), None, 10, None)
    assert tok.tolist() == pytest.approx([0.1, 0.1, 0, 0.1, 0.1, 0.1]) and torch.equal(tok, metric)
    loss_w, _ = token_weights(mask, GRPOLossConfig(loss_agg_mode="seq-mean-token-mean"), seqs, None, None)
    assert loss_w.tolist() == pytest.approx([1 / 6, 1 / 6, 0, 1 / 6, 1 / 6, 1 / 3])


def test_config_and_input_validation():
    with pytest.raises(ValueError, match="dual_clip_c must be > 1"):
        GRPOLossConfig(dual_clip_c=1.0)
    with pytest.raises(ValueError, match="loss_agg_mode"):
        GRPOLossConfig(loss_agg_mode="seq-mean")
    with pytest.raises(ValueError, match="clip_eps_low"):
        GRPOLossConfig(clip_eps_low=1.0)
    logits, targets = torch.randn(7, 16), torch.randint(0, 16, (7,))
    old, adv, mask = torch.zeros(7), torch.ones(7), torch.ones(7, dtype=torch.bool)
    for fn in (grpo_loss, reference_grpo_loss):
        with pytest.raises(ValueError, match="needs ref_logp"):
            fn(logits, targets, old, adv, mask, config=GRPOLossConfig(kl_coef=0.1))
        with pytest.raises(ValueError, match="needs rollout_logp"):
            fn(logits, targets, old, adv, mask, config=GRPOLossConfig(tis_cap=2.0))
        with pytest.raises(ValueError, match="needs seq_ids"):
            fn(logits, targets, old, adv, mask, config=GRPOLossConfig(loss_agg_mode="seq-mean-token-sum"))
        with pytest.raises(ValueError, match="advantages has shape"):
            fn(logits, targets, old, adv[:-1], mask)


# ------------------------------------------------------------------- part 2: Triton vs fp64 reference

B, T, SHARD, VOCAB = 4, 9, 80, 71


def make_case(seed: int = 0, temperature: float = 1.0):
    gen = generator(seed)
    logits = torch.randn(B, T, SHARD, generator=gen) * 2
    targets = special_targets(B * T, VOCAB, SHARD, gen).view(B, T)
    mask = torch.rand(B, T, generator=gen) > 0.25
    mask.view(-1)[[1, 3, B * T - 2]] = False  # ignore-valued and padded-column targets sit under the mask
    # old/ref/rollout log-probs near the current ones, so that every clip branch is taken by some token
    current, _ = reference_logprobs(logits.double(), targets, vocab_size=VOCAB, temperature=temperature)
    old = (current + 0.3 * torch.randn(B, T, generator=gen, dtype=torch.float64)).float()
    old[~mask] = float("nan")  # masked tokens may hold garbage
    extras = dict(
        advantages=torch.randn(B, T, generator=gen),
        ref_logp=old + 0.3 * torch.randn(B, T, generator=gen),
        rollout_logp=old + 0.5 * torch.randn(B, T, generator=gen),
    )
    return logits, targets, old, mask, extras


CONFIGS = {
    "token-mean-plain": (GRPOLossConfig(), dict(temperature=1.0, compute_entropy=False)),
    "all-terms-seq-mean-token-mean": (
        GRPOLossConfig(clip_eps_high=0.3, dual_clip_c=1.3, kl_coef=0.1, entropy_coef=0.01, tis_cap=1.3,
                       loss_agg_mode="seq-mean-token-mean"),
        dict(temperature=0.8, compute_entropy=True, num_global_tokens=50, num_global_seqs=7),
    ),
    "entropy-bonus-seq-mean-token-sum": (
        GRPOLossConfig(entropy_coef=0.05, loss_agg_mode="seq-mean-token-sum"), dict(temperature=1.2),
    ),
}


def run(fn, logits, targets, old, mask, extras, config, **kwargs):
    x = logits.detach().clone().requires_grad_(True)
    loss, metrics = fn(x, targets, old, extras["advantages"], mask, config=config, vocab_size=VOCAB,
                       ref_logp=extras["ref_logp"], rollout_logp=extras["rollout_logp"], **kwargs)
    (grad,) = torch.autograd.grad(loss, [x])
    return loss.detach(), metrics, grad


@pytest.mark.parametrize("name", list(CONFIGS))
def test_triton_matches_fp64_reference(name):
    config, kwargs = CONFIGS[name]
    logits, targets, old, mask, extras = make_case(temperature=kwargs["temperature"])
    loss, metrics, grad = run(grpo_loss, logits, targets, old, mask, extras, config, block_v=32, **kwargs)
    ref_loss, ref_metrics, ref_grad = run(reference_grpo_loss, logits.double(), targets, old, mask, extras,
                                          config, **kwargs)
    assert_rel_close(loss, ref_loss, "loss")
    assert_rel_close(grad, ref_grad, "grad")
    assert grad.dtype == torch.float32 and (grad[~mask] == 0).all()  # masked rows: exact zeros
    assert set(metrics) == set(ref_metrics)
    # what the trainer logs (Policy.loss_metrics) is what the fp64 reference computes for this config
    assert config.metric_names(entropy=kwargs.get("compute_entropy", False)) == tuple(
        k for k in ("pg_loss", "clip_frac_low", "clip_frac_high", "approx_kl", "dual_clip_frac", "kl_loss", "entropy",
                    "tis_clip_frac") if k in ref_metrics)
    for key in metrics:
        assert not metrics[key].requires_grad
        assert metrics[key].item() == pytest.approx(ref_metrics[key].item(), rel=1e-5, abs=1e-7), key


def test_all_masked_micro_batch_gives_zero_loss_and_gradient():
    logits, targets, old, mask, extras = make_case(seed=1)
    none = torch.zeros_like(mask)
    for fn, x, kw in ((grpo_loss, logits, {"block_v": 32}), (reference_grpo_loss, logits.double(), {})):
        loss, metrics, grad = run(fn, x, targets, old, none, extras, GRPOLossConfig(), num_global_tokens=64, **kw)
        assert loss.item() == 0 and (grad == 0).all()
        assert all(v.item() == 0 for v in metrics.values())


def test_bf16_logits_in_the_interpreter():
    """bf16 logits, all loss terms: the loss and metrics are computed in fp32 from the exact bf16 values, so
    they match the fp64 reference on the same logits to fp32 accuracy; the gradient is stored in bf16 (the
    interpreter truncates, a GPU rounds to nearest), so it is checked to one bf16 ulp (2^-7)."""
    config, kwargs = CONFIGS["all-terms-seq-mean-token-mean"]
    logits, targets, old, mask, extras = make_case(seed=2, temperature=kwargs["temperature"])
    logits = logits.bfloat16()
    loss, metrics, grad = run(grpo_loss, logits, targets, old, mask, extras, config, block_v=32, **kwargs)
    ref_loss, ref_metrics, ref_grad = run(reference_grpo_loss, logits.double(), targets, old, mask, extras,
                                          config, **kwargs)
    assert grad.dtype == torch.bfloat16 and (grad[~mask] == 0).all()
    assert_rel_close(loss, ref_loss, "loss")
    assert_rel_close(grad, ref_grad, "grad", rtol=2**-7)
    for key in ref_metrics:
        assert metrics[key].item() == pytest.approx(ref_metrics[key].item(), rel=1e-5, abs=1e-7), key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 Triton paths need a CUDA GPU")
def test_bf16_on_gpu_matches_reference():
    n = 2048
    gen, logits, targets = gpu_bf16_case(n)
    mask = torch.rand(n, device="cuda", generator=gen) > 0.3
    old = -torch.rand(n, device="cuda", generator=gen) * 5
    extras = dict(advantages=torch.randn(n, device="cuda", generator=gen), ref_logp=old - 0.1, rollout_logp=old)
    cfg = GRPOLossConfig(dual_clip_c=3.0, kl_coef=0.05, entropy_coef=0.01, tis_cap=2.0)
    loss, metrics, grad = run(grpo_loss, logits, targets, old, mask, extras, cfg)
    ref_loss, ref_metrics, ref_grad = run(reference_grpo_loss, logits.double(), targets, old, mask, extras, cfg)
    assert grad.dtype == torch.bfloat16
    assert_rel_close(loss, ref_loss, "loss")
    assert_rel_close(grad, ref_grad, "grad", rtol=8e-3)
    for key in ref_metrics:
        assert metrics[key].item() == pytest.approx(ref_metrics[key].item(), rel=1e-4, abs=1e-6), key
