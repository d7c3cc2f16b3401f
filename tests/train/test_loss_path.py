"""srpo_mcore/train/loss.py in one process: the fused LM head ([s, b, h] hidden states + weight) gives the logits
path's log-probs, loss, metrics and gradients (fp64, both kernel backends, every loss aggregation, b != s so a
transposition slip shows), and a head of the wrong kind is refused."""

import pytest
import torch
from srpo_kernels.grpo_loss_reference import GRPOLossConfig

from srpo_mcore.model.forward import LMHeadInput, MicroBatch
from srpo_mcore.train.loss import TokenLoss

S, B, H, V = 7, 3, 16, 50


def micro_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(B, S, generator=g) < 0.7).double()
    extras = {"targets": torch.randint(0, V - 3, (B, S), generator=g), "loss_mask": mask,
              "advantages": torch.randn(B, S, generator=g, dtype=torch.float64) * mask,
              "rollout_logprobs": -torch.rand(B, S, generator=g, dtype=torch.float64) * mask}
    return MicroBatch(torch.zeros(B, S, dtype=torch.long), extras), g


def run(fused, backend, agg, dtype):
    mb, g = micro_batch()
    hidden = torch.randn(S, B, H, generator=g, dtype=dtype).requires_grad_()
    weight = torch.randn(V, H, generator=g, dtype=dtype).requires_grad_()
    config = GRPOLossConfig(loss_agg_mode=agg, tis_cap=2.0)
    path = TokenLoss(fused=fused, backend=backend, loss_config=config, vocab_size=V - 3, temperature=0.7)

    def head():
        if fused:
            return LMHeadInput(hidden, weight, reduce_grad_input=True)
        return torch.nn.functional.linear(hidden, weight).transpose(0, 1).contiguous()  # GPTModel's [b, s, V]

    with torch.no_grad():
        old = path.logprobs(head(), mb)
    mb.extras["old_logprobs"] = old + 0.2 * torch.randn(B, S, generator=g, dtype=old.dtype) * mb.extras["loss_mask"]
    loss, metrics = path.loss(head(), mb, with_reference=False)
    loss.backward()
    return old, loss.detach(), metrics, hidden.grad, weight.grad


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"])
def test_fused_head_equals_logits_path_torch_backend_fp64(agg):
    logits, fused = run(False, "torch", agg, torch.float64), run(True, "torch", agg, torch.float64)
    assert fused[0].shape == (B, S)
    for a, b in zip(logits[:2] + logits[3:], fused[:2] + fused[3:]):
        torch.testing.assert_close(b.double(), a.double(), rtol=1e-10, atol=1e-12)
    assert logits[2].keys() == fused[2].keys() and "entropy" in fused[2]
    for key in logits[2]:
        torch.testing.assert_close(fused[2][key].double(), logits[2][key].double(), rtol=1e-6, atol=1e-7)
    assert fused[2]["clip_frac_low"] > 0 or fused[2]["clip_frac_high"] > 0


def test_fused_head_triton_backend_equals_torch_logits_path():
    # Triton interpreter, fp32 (the kernels do not take fp64)
    logits, fused = run(False, "torch", "token-mean", torch.float32), run(True, "triton", "token-mean", torch.float32)
    for a, b in zip(logits[:2] + logits[3:], fused[:2] + fused[3:]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_wrong_head_kind_is_refused():
    mb, _ = micro_batch()
    fused = TokenLoss(fused=True, backend="torch", loss_config=GRPOLossConfig(), vocab_size=V, temperature=1.0)
    with pytest.raises(TypeError, match="head='hidden'"):
        fused.logprobs(torch.zeros(B, S, V), mb)
    logits = TokenLoss(fused=False, backend="torch", loss_config=GRPOLossConfig(), vocab_size=V, temperature=1.0)
    with pytest.raises(TypeError, match="head='logits'"):
        logits.logprobs(LMHeadInput(torch.zeros(S, B, H), torch.zeros(V, H), True), mb)


# ------------------------------------------------------------------ on-policy: old log-probs from the same forward
def on_policy_run(fused, backend, dtype, *, old_from_forward, old_noise=0.0):
    """One loss + backward with the old log-probs either from a separate no-grad evaluation (what
    ``Policy.compute_old_logprobs`` stores, optionally perturbed) or from the loss's own forward."""
    mb, g = micro_batch(seed=1)
    hidden = torch.randn(S, B, H, generator=g, dtype=dtype).requires_grad_()
    weight = torch.randn(V, H, generator=g, dtype=dtype).requires_grad_()
    config = GRPOLossConfig(tis_cap=1.5, entropy_coef=0.01)
    path = TokenLoss(fused=fused, backend=backend, loss_config=config, vocab_size=V - 3, temperature=0.7)

    def head():
        if fused:
            return LMHeadInput(hidden, weight, reduce_grad_input=True)
        return torch.nn.functional.linear(hidden, weight).transpose(0, 1).contiguous()

    mask = mb.extras["loss_mask"].bool()
    with torch.no_grad():
        old = path.logprobs(head(), mb)
    # rollout log-probs within 1 nat of the trainer's: TIS (cap 1.5) truncates some tokens' weights, not all
    mb.extras["rollout_logprobs"] = (old + 2 * torch.rand(B, S, generator=g, dtype=old.dtype) - 1) * mask
    if not old_from_forward:
        mb.extras["old_logprobs"] = torch.where(mask, old + old_noise, torch.zeros_like(old))
    loss, metrics = path.loss(head(), mb, with_reference=False, old_from_forward=old_from_forward)
    loss.backward()
    return {"loss": loss.detach(), **metrics, "old": mb.extras["old_logprobs"], "hidden_grad": hidden.grad,
            "weight_grad": weight.grad}


@pytest.mark.parametrize("fused", [True, False], ids=["fused-head", "logits"])
@pytest.mark.parametrize("backend,dtype", [("torch", torch.float64), ("torch", torch.float32),
                                           ("triton", torch.float32)])
def test_old_logprobs_from_the_training_forward_equal_a_separate_pass(fused, backend, dtype):
    """train.old_logprobs=auto vs recompute on one micro-batch: the stored old log-probs (zero off the mask), the
    loss, every metric (TIS weights compare old with the rollout's) and both gradients agree to rounding (measured:
    bit-identical in every case here; the bound leaves room for a kernel that orders its sums differently with and
    without the entropy). Negative control: old log-probs off by 0.05 nats (ratio != 1) move the hidden-state
    gradient by ~5% of its largest entry (measured 0.046-0.049), far beyond that bound."""
    recompute = on_policy_run(fused, backend, dtype, old_from_forward=False)
    forward = on_policy_run(fused, backend, dtype, old_from_forward=True)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-6, "atol": 1e-6}
    assert recompute.keys() == forward.keys() and {"tis_clip_frac", "entropy", "approx_kl"} <= forward.keys()
    for key in recompute:
        torch.testing.assert_close(forward[key], recompute[key], **tol, msg=key)
    # metrics are sums here (normaliser 1): the TIS cap bit on some tokens, not all (old vs rollout was compared)
    assert 0 < forward["tis_clip_frac"] < micro_batch(seed=1)[0].extras["loss_mask"].sum()
    assert abs(forward["approx_kl"]) < 1e-6 and forward["clip_frac_low"] == 0 and forward["clip_frac_high"] == 0
    shifted = on_policy_run(fused, backend, dtype, old_from_forward=False, old_noise=0.05)
    gap = (shifted["hidden_grad"] - recompute["hidden_grad"]).abs().max() / recompute["hidden_grad"].abs().max()
    assert gap > 1e-2, gap
