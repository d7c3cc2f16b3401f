"""Vocab-parallel log-probs: the Triton kernels (interpreter on CPU) and the torch backend vs. the fp64 reference.

Shapes: N=37 tokens (not a multiple of any block), a shard of 80 columns of which 71 are real vocabulary (9
padded), vocab tiles of 32 columns (3 tiles per row, the last one partial).
"""

from __future__ import annotations

import pytest
import torch
from srpo_kernels.logprobs import logprobs
from srpo_kernels.logprobs_reference import reference_logprobs

from tests.kernels.helpers import assert_rel_close, generator, gpu_bf16_case, special_targets

N, SHARD, VOCAB, BLOCK_V = 37, 80, 71, 32


def make_case(seed: int = 0, dtype=torch.float32):
    gen = generator(seed)
    logits = (torch.randn(N, SHARD, generator=gen) * 3).to(dtype)
    targets = special_targets(N, VOCAB, SHARD, gen)
    g_logp, g_ent = torch.randn(N, generator=gen), torch.randn(N, generator=gen)
    return logits, targets, g_logp, g_ent


def run(fn, logits, targets, g_logp, g_ent, **kwargs):
    """Outputs and the gradient of ``sum(g_logp * logp + g_ent * entropy)`` w.r.t. the logits."""
    x = logits.detach().clone().requires_grad_(True)
    logp, ent = fn(x, targets, **kwargs)
    outs, grads = [logp], [g_logp.to(logp.dtype)]
    if ent is not None:
        outs.append(ent)
        grads.append(g_ent.to(ent.dtype))
    (grad,) = torch.autograd.grad(outs, [x], grads)
    return logp.detach(), (ent.detach() if ent is not None else None), grad


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("compute_entropy", [False, True])
def test_triton_matches_fp64_reference(compute_entropy, temperature):
    logits, targets, g_logp, g_ent = make_case()
    kw = dict(vocab_size=VOCAB, temperature=temperature, compute_entropy=compute_entropy)
    logp, ent, grad = run(logprobs, logits, targets, g_logp, g_ent, block_v=BLOCK_V, **kw)
    ref_logp, ref_ent, ref_grad = run(reference_logprobs, logits.double(), targets, g_logp, g_ent, **kw)

    assert logp.dtype == torch.float32 and grad.dtype == logits.dtype
    assert_rel_close(logp, ref_logp, "logp")
    assert_rel_close(grad, ref_grad, "grad")
    if compute_entropy:
        assert_rel_close(ent, ref_ent, "entropy")
    else:
        assert ent is None
    ignored = targets == -100
    assert (logp[ignored] == 0).all() and (grad[ignored] == 0).all()  # exact: never read
    assert (grad[:, VOCAB:] == 0).all()  # padded columns never get gradient
    assert logp[3] == float("-inf")  # target in a padded column: probability zero
    assert torch.isfinite(grad).all()


def test_gradient_through_entropy_only():
    logits, targets, _, g_ent = make_case(seed=1)
    grads = []
    for fn, x, kw in ((logprobs, logits, {"block_v": BLOCK_V}), (reference_logprobs, logits.double(), {})):
        x = x.clone().requires_grad_(True)
        _, ent = fn(x, targets, vocab_size=VOCAB, compute_entropy=True, **kw)
        grads.append(torch.autograd.grad(ent, [x], g_ent.to(ent.dtype))[0])
    assert_rel_close(grads[0], grads[1], "grad via entropy")


@pytest.mark.parametrize("dtype, seed, temperature, grad_rtol", [
    (torch.float16, 2, 0.9, 1e-3),  # fp16 has 11 significant bits: the gradient is rounded to fp16 once
    # The interpreter loads bf16 exactly and upcasts it, but truncates fp32 -> bf16 stores (a GPU rounds to
    # nearest), so the gradient is checked to one bf16 ulp (2^-7).
    (torch.bfloat16, 5, 0.7, 2**-7),
])
def test_half_precision_logits_upcast_per_tile(dtype, seed, temperature, grad_rtol):
    """16-bit logits: math in fp32 on the exact 16-bit values, so log-probs match to fp32 accuracy."""
    logits, targets, g_logp, g_ent = make_case(seed=seed, dtype=dtype)
    kw = dict(vocab_size=VOCAB, temperature=temperature, compute_entropy=True)
    logp, ent, grad = run(logprobs, logits, targets, g_logp, g_ent, block_v=BLOCK_V, **kw)
    ref_logp, ref_ent, ref_grad = run(reference_logprobs, logits.double(), targets, g_logp, g_ent, **kw)
    assert grad.dtype == dtype
    assert_rel_close(logp, ref_logp, "logp")
    assert_rel_close(ent, ref_ent, "entropy")
    assert_rel_close(grad, ref_grad, "grad", rtol=grad_rtol)


def test_leading_dims_and_a_detectably_wrong_temperature():
    logits, targets, g_logp, g_ent = make_case(seed=3)
    logp, _, _ = run(logprobs, logits.view(1, N, SHARD), targets.view(1, N), g_logp.view(1, N),
                     g_ent, vocab_size=VOCAB, block_v=BLOCK_V)
    assert logp.shape == (1, N)
    ref_right, _, _ = run(reference_logprobs, logits.double(), targets, g_logp, g_ent, vocab_size=VOCAB)
    ref_wrong, _, _ = run(reference_logprobs, logits.double(), targets, g_logp, g_ent, vocab_size=VOCAB,
                          temperature=1.01)
    assert_rel_close(logp.view(N), ref_right, "logp")
    with pytest.raises(AssertionError, match="relative error"):  # the error measure does catch a 1% change
        assert_rel_close(logp.view(N), ref_wrong, "logp")


def test_torch_backend_chunked_equals_unchunked():
    logits, targets, g_logp, g_ent = make_case(seed=4)
    kw = dict(vocab_size=VOCAB, temperature=0.8, compute_entropy=True)
    whole = run(reference_logprobs, logits.double(), targets, g_logp, g_ent, **kw)
    chunked = run(reference_logprobs, logits.double(), targets, g_logp, g_ent, chunk_size=8, **kw)
    for name, a, b in zip(("logp", "entropy", "grad"), chunked, whole):
        assert_rel_close(a, b, name, rtol=1e-12)


def test_invalid_arguments_raise():
    logits, targets, _, _ = make_case()
    for fn in (logprobs, reference_logprobs):
        with pytest.raises(ValueError, match="vocab_size"):
            fn(logits, targets, vocab_size=SHARD + 1)
        with pytest.raises(ValueError, match="plus one last dimension"):
            fn(logits, targets[:-1])
        with pytest.raises(TypeError, match="int32 or int64"):
            fn(logits, targets.float())
        with pytest.raises(ValueError, match="temperature"):
            fn(logits, targets, temperature=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 Triton paths need a CUDA GPU")
def test_bf16_on_gpu_matches_reference():
    n, vocab = 1000, 18950
    gen, logits, targets = gpu_bf16_case(n, vocab_size=vocab)
    targets[::7] = -100
    g_logp, g_ent = torch.randn(n, device="cuda", generator=gen), torch.randn(n, device="cuda", generator=gen)
    kw = dict(vocab_size=vocab, temperature=0.7, compute_entropy=True)
    logp, ent, grad = run(logprobs, logits, targets, g_logp, g_ent, **kw)
    ref_logp, ref_ent, ref_grad = run(reference_logprobs, logits.double(), targets, g_logp, g_ent, **kw)
    assert grad.dtype == torch.bfloat16
    assert_rel_close(logp, ref_logp, "logp")
    assert_rel_close(ent, ref_ent, "entropy")
    assert_rel_close(grad, ref_grad, "grad", rtol=8e-3)  # one bf16 rounding (8 significant bits)
    torch_logp, _, torch_grad = run(reference_logprobs, logits, targets, g_logp, g_ent, chunk_size=256, **kw)
    assert_rel_close(torch_logp.double(), ref_logp, "torch backend logp")
