"""Fused LM head + log-probs: Triton path (interpreter on CPU) and torch backend vs. the fp64 reference.

Shapes: N=29 tokens, H=24, a weight shard of 80 rows. Vocab chunks of 32 columns with 75 real columns (chunks
of 32, 32 and 11 real columns), or of 20 columns with 60 real columns (the last chunk is all padding).
"""

from __future__ import annotations

import pytest
import torch
from srpo_kernels.fused_linear_logprobs import _chunk_width, fused_linear_logprobs
from srpo_kernels.fused_linear_logprobs_reference import reference_fused_linear_logprobs

from tests.kernels.helpers import assert_rel_close, generator, special_targets

N, H, SHARD = 29, 24, 80


def make_case(vocab: int, seed: int = 0, dtype=torch.float32):
    gen = generator(seed)
    hidden = torch.randn(N, H, generator=gen).to(dtype)
    weight = (torch.randn(SHARD, H, generator=gen) * 0.5).to(dtype)
    targets = special_targets(N, vocab, SHARD, gen)
    return hidden, weight, targets, torch.randn(N, generator=gen), torch.randn(N, generator=gen)


def run(fn, hidden, weight, targets, g_logp, g_ent, grad_hidden=True, **kwargs):
    h = hidden.detach().clone().requires_grad_(grad_hidden)
    w = weight.detach().clone().requires_grad_(True)
    logp, ent = fn(h, w, targets, **kwargs)
    outs, grads = [logp], [g_logp.to(logp.dtype)]
    if ent is not None:
        outs.append(ent)
        grads.append(g_ent.to(ent.dtype))
    inputs = [h, w] if grad_hidden else [w]
    got = torch.autograd.grad(outs, inputs, grads)
    dh, dw = got if grad_hidden else (None, got[0])
    return logp.detach(), (ent.detach() if ent is not None else None), dh, dw


@pytest.mark.parametrize(
    "vocab, chunk, compute_entropy, temperature",
    [(75, 32, True, 0.7), (60, 20, False, 1.0)],
    ids=["partial-last-chunk-entropy-T0.7", "all-padding-chunk-T1"],
)
def test_triton_matches_fp64_reference(vocab, chunk, compute_entropy, temperature):
    hidden, weight, targets, g_logp, g_ent = make_case(vocab)
    kw = dict(vocab_size=vocab, temperature=temperature, compute_entropy=compute_entropy)
    logp, ent, dh, dw = run(fused_linear_logprobs, hidden, weight, targets, g_logp, g_ent,
                            vocab_chunk_size=chunk, block_v=16, **kw)
    ref = run(reference_fused_linear_logprobs, hidden.double(), weight.double(), targets, g_logp, g_ent, **kw)

    assert_rel_close(logp, ref[0], "logp")
    if compute_entropy:
        assert_rel_close(ent, ref[1], "entropy")
    assert dh.dtype == dw.dtype == torch.float32
    assert_rel_close(dh, ref[2], "grad hidden")
    assert_rel_close(dw, ref[3], "grad weight")
    assert (dw[vocab:] == 0).all()  # padded rows of the output layer get no gradient
    assert logp[3] == float("-inf") and (logp[targets == -100] == 0).all()


def test_weight_gradient_only():
    """Frozen hidden states (e.g. a LoRA-free head fine-tune): only dW is computed."""
    hidden, weight, targets, g_logp, g_ent = make_case(75, seed=1)
    _, _, dh, dw = run(fused_linear_logprobs, hidden, weight, targets, g_logp, g_ent, grad_hidden=False,
                       vocab_size=75, vocab_chunk_size=48, block_v=32)
    ref = run(reference_fused_linear_logprobs, hidden.double(), weight.double(), targets, g_logp, g_ent,
              grad_hidden=False, vocab_size=75)
    assert dh is None
    assert_rel_close(dw, ref[3], "grad weight")


def test_torch_backend_chunked_equals_unchunked():
    hidden, weight, targets, g_logp, g_ent = make_case(75, seed=2)
    kw = dict(vocab_size=75, temperature=0.9, compute_entropy=True)
    whole = run(reference_fused_linear_logprobs, hidden.double(), weight.double(), targets, g_logp, g_ent, **kw)
    chunked = run(reference_fused_linear_logprobs, hidden.double(), weight.double(), targets, g_logp, g_ent,
                  chunk_size=7, **kw)
    for name, a, b in zip(("logp", "entropy", "grad hidden", "grad weight"), chunked, whole):
        assert_rel_close(a, b, name, rtol=1e-12)


def test_default_chunk_width_bounds_the_logits_chunk():
    # 32768 tokens of bf16: 256 MiB of logits is 4096 columns; never wider than the shard, never below 256
    assert _chunk_width(32768, 152064, 2, None) == 4096
    assert _chunk_width(10, 1000, 2, None) == 1000
    assert _chunk_width(10**7, 152064, 2, None) == 256
    with pytest.raises(ValueError, match="positive"):
        _chunk_width(10, 1000, 2, 0)


def test_invalid_arguments_raise():
    hidden, weight, targets, _, _ = make_case(75)
    for fn in (fused_linear_logprobs, reference_fused_linear_logprobs):
        with pytest.raises(ValueError, match=r"\[V/TP, H\]"):
            fn(hidden, weight[:, :-1], targets)
        with pytest.raises(TypeError, match="same dtype"):
            fn(hidden, weight.double(), targets)
        with pytest.raises(ValueError, match="targets"):
            fn(hidden, weight, targets[:-1])


def test_bf16_in_the_interpreter():
    """bf16 hidden states and weight on CPU. Both the Triton path and the torch backend round each logits chunk
    to bf16 once (the GEMM's output dtype), then do the softmax in fp32: log-probs and entropy agree to fp32
    accuracy; the gradients to one bf16 ulp (the interpreter truncates fp32 -> bf16 stores, torch rounds to
    nearest). Against the fp64 reference on the same inputs the bf16 logits rounding shows (~1e-3), bounded
    by one bf16 ulp (2^-7) too."""
    hidden, weight, targets, g_logp, g_ent = make_case(75, seed=3, dtype=torch.bfloat16)
    kw = dict(vocab_size=75, temperature=0.7, compute_entropy=True)
    got = run(fused_linear_logprobs, hidden, weight, targets, g_logp, g_ent, vocab_chunk_size=32, block_v=16, **kw)
    assert got[2].dtype == got[3].dtype == torch.bfloat16
    same_rounding = run(reference_fused_linear_logprobs, hidden, weight, targets, g_logp, g_ent, chunk_size=8, **kw)
    exact = run(reference_fused_linear_logprobs, hidden.double(), weight.double(), targets, g_logp, g_ent, **kw)
    for name, a, b, c in zip(("logp", "entropy", "grad hidden", "grad weight"), got, same_rounding, exact):
        assert_rel_close(a.double(), b.double(), f"{name} vs torch backend", rtol=1e-5 if "grad" not in name else 2**-7)
        assert_rel_close(a.double(), c, f"{name} vs fp64", rtol=2**-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 Triton paths need a CUDA GPU")
def test_bf16_on_gpu_matches_reference():
    gen = torch.Generator(device="cuda").manual_seed(0)
    n, h, shard, vocab = 512, 256, 8192, 8150
    hidden = torch.randn(n, h, device="cuda", generator=gen).bfloat16()
    weight = (torch.randn(shard, h, device="cuda", generator=gen) / h**0.5).bfloat16()
    targets = torch.randint(0, vocab, (n,), device="cuda", generator=gen)
    targets[::9] = -100
    g_logp, g_ent = torch.randn(n, device="cuda", generator=gen), torch.randn(n, device="cuda", generator=gen)
    kw = dict(vocab_size=vocab, temperature=0.8, compute_entropy=True)
    logp, ent, dh, dw = run(fused_linear_logprobs, hidden, weight, targets, g_logp, g_ent,
                            vocab_chunk_size=3000, **kw)
    # Oracle: the torch backend on the same bf16 inputs (cuBLAS bf16 logits, fp32 softmax). Both round the
    # logits to bf16, but cuBLAS may pick different algorithms for the chunk and the full shapes, so a logit
    # can differ by one bf16 ulp: log-probs agree to ~1e-3, gradients to the bf16 rounding.
    ref = run(reference_fused_linear_logprobs, hidden, weight, targets, g_logp, g_ent, chunk_size=128, **kw)
    assert dh.dtype == dw.dtype == torch.bfloat16
    assert_rel_close(logp, ref[0], "logp", rtol=2e-3)
    assert_rel_close(ent, ref[1], "entropy", rtol=2e-3)
    assert_rel_close(dh, ref[2], "grad hidden", rtol=3e-2)
    assert_rel_close(dw, ref[3], "grad weight", rtol=3e-2)
