"""Shared by the kernel tests: the error measure and small deterministic inputs.

Errors are normwise relative: ``max|actual - expected| / max|expected|`` over the finite entries, after
checking that both have non-finite values (``-inf`` log-probs of padded targets) at the same places. The
acceptance bound for fp32 kernels against the fp64 reference is 1e-5.
"""

from __future__ import annotations

import torch

RTOL = 1e-5


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    finite = torch.isfinite(expected)
    assert torch.equal(torch.isfinite(actual), finite), "non-finite entries differ"
    assert torch.equal(actual[~finite], expected[~finite].to(actual.dtype)), "non-finite values differ"
    if not finite.any():
        return 0.0
    diff = (actual.double() - expected.double())[finite].abs().max()
    scale = expected.double()[finite].abs().max()
    return 0.0 if diff == 0 else (diff / scale).item()


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, name: str, rtol: float = RTOL) -> None:
    err = rel_err(actual, expected)
    assert err <= rtol, f"{name}: normwise relative error {err:.3e} > {rtol:.0e}"


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gpu_bf16_case(n: int, shard: int = 19008, vocab_size: int = 18950, seed: int = 0):
    """A CUDA generator and bf16 logits ``[n, shard]`` (a TP shard of the real 152k vocabulary, the last columns
    padding) with targets in ``[0, vocab_size)``, for the bf16 tests that need a GPU."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    logits = (torch.randn(n, shard, device="cuda", generator=gen) * 3).bfloat16()
    return gen, logits, torch.randint(0, vocab_size, (n,), device="cuda", generator=gen)


def special_targets(n: int, vocab_size: int, padded: int, gen: torch.Generator, ignore_index: int = -100):
    """Random targets in ``[0, vocab_size)`` plus the edge cases every kernel test covers:
    ``ignore_index`` (rows 1 and n-2), a padded column (row 3, when there is padding), the last real
    column (row 4) and column 0 (row 5)."""
    t = torch.randint(0, vocab_size, (n,), generator=gen)
    t[1] = t[n - 2] = ignore_index
    if padded > vocab_size:
        t[3] = vocab_size + (padded - vocab_size) // 2
    t[4], t[5] = vocab_size - 1, 0
    return t
