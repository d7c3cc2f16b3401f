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
