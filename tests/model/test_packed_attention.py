"""The local spec's packed (THD) core attention against a dense fp64 formula and the per-sample SDPA reference."""

import pytest
import torch

from srpo_mcore.model.packed_attention import (
    GROUP_FILL,
    packed_causal_attention,
    packed_layout,
    per_sample_causal_attention,
)

# (segment lengths, tokens in the row): ragged, length-1 samples, an empty segment, tail tokens past the boundaries
ROWS = {
    "ragged": ([5, 1, 7, 3, 1, 12, 2, 9], None),
    "empty segment": ([4, 0, 6, 1], None),
    "tail padding": ([3, 8, 1], 17),
    "one sample": ([11], None),
    "quickstart-like": ([20, 48, 33, 21, 47, 30, 25, 40, 22, 45], None),
}
HEADS = [(2, 1), (4, 2), (3, 3), (6, 2)]  # (query heads, KV groups)
FILLS = [0.0, GROUP_FILL, 0.75, 1.01]


def boundaries_of(lengths):
    out = [0]
    for n in lengths:
        out.append(out[-1] + n)
    return out


def dense_reference(q, k, v, boundaries, tokens, scale):
    """Softmax attention over the full row with the mask spelled out: token i sees j iff j <= i and both lie in
    the same segment (tokens past the last boundary form one more)."""
    segment = torch.full((tokens,), len(boundaries) - 1)
    for i, (s, e) in enumerate(zip(boundaries, boundaries[1:])):
        segment[s:e] = i
    pos = torch.arange(tokens)
    allowed = (segment[:, None] == segment[None, :]) & (pos[None, :] <= pos[:, None])
    repeat = q.shape[1] // k.shape[1]
    kk, vv = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
    scores = torch.einsum("ihd,jhd->hij", q, kk) * scale
    probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return torch.einsum("hij,jhd->ihd", probs, vv).reshape(tokens, -1)


def inputs(tokens, heads, groups, dim=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda h: torch.randn(tokens, h, dim, generator=g, dtype=dtype).requires_grad_()  # noqa: E731
    return make(heads), make(groups), make(groups), torch.randn(tokens, heads * dim, generator=g, dtype=dtype)


def value_and_grads(fn, q, k, v, grad_out):
    out = fn(q, k, v)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    return out.detach(), grads


@pytest.mark.parametrize("row", ROWS)
@pytest.mark.parametrize("heads,groups", HEADS)
@pytest.mark.parametrize("fill", FILLS)
def test_grouped_attention_equals_dense_formula_and_per_sample_sdpa_fp64(row, heads, groups, fill):
    lengths, tokens = ROWS[row]
    boundaries = boundaries_of(lengths)
    tokens = tokens or boundaries[-1]
    q, k, v, grad_out = inputs(tokens, heads, groups)
    scale = 0.3
    grouped = value_and_grads(lambda *x: packed_causal_attention(*x, boundaries, scale=scale, fill=fill),
                              q, k, v, grad_out)
    dense = value_and_grads(lambda *x: dense_reference(*x, boundaries, tokens, scale), q, k, v, grad_out)
    per_sample = value_and_grads(lambda *x: per_sample_causal_attention(*x, boundaries, scale=scale),
                                 q, k, v, grad_out)
    for reference in (dense, per_sample):
        torch.testing.assert_close(grouped[0], reference[0], rtol=0, atol=1e-12)
        for got, want in zip(grouped[1], reference[1]):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("fill", FILLS)
def test_grouped_attention_fp32_is_within_fp32_noise_of_fp64(fill):
    lengths, _ = ROWS["quickstart-like"]
    boundaries = boundaries_of(lengths)
    q, k, v, grad_out = inputs(boundaries[-1], 4, 2, dim=32)
    want = value_and_grads(lambda *x: dense_reference(*x, boundaries, boundaries[-1], 32 ** -0.5), q, k, v, grad_out)
    q32, k32, v32 = (x.detach().float().requires_grad_() for x in (q, k, v))
    got = value_and_grads(lambda *x: packed_causal_attention(*x, boundaries, scale=32 ** -0.5, fill=fill),
                          q32, k32, v32, grad_out.float())
    torch.testing.assert_close(got[0].double(), want[0], rtol=0, atol=2e-6)
    for g, w in zip(got[1], want[1]):
        torch.testing.assert_close(g.double(), w, rtol=0, atol=2e-5)


def test_the_reference_tells_packed_from_plain_causal_attention():
    """Negative control: attention across samples (the row as one causal sequence) is far outside the bounds."""
    lengths, _ = ROWS["ragged"]
    boundaries = boundaries_of(lengths)
    q, k, v, _ = inputs(boundaries[-1], 4, 2)
    across = packed_causal_attention(q, k, v, [0, boundaries[-1]], scale=0.3)
    assert (across - dense_reference(q, k, v, boundaries, boundaries[-1], 0.3)).abs().max() > 1e-2


def test_a_sample_does_not_see_the_others():
    lengths = [6, 1, 9, 4]
    boundaries = boundaries_of(lengths)
    q, k, v, _ = inputs(boundaries[-1], 2, 1)
    before = packed_causal_attention(q, k, v, boundaries, scale=0.3)
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[7:16] += 5.0  # the third sample's keys and values only
    v2[7:16] -= 3.0
    after = packed_causal_attention(q, k2, v2, boundaries, scale=0.3)
    assert torch.equal(before[:7], after[:7]) and torch.equal(before[16:], after[16:])
    assert not torch.allclose(before[7:16], after[7:16])


@pytest.mark.parametrize("fill", FILLS)
def test_layout_puts_every_token_in_one_slot_of_its_own_sample(fill):
    lengths = [5, 1, 7, 3, 1, 12, 2, 9, 0, 4]
    boundaries = boundaries_of(lengths)
    layout = packed_layout(tuple(boundaries), torch.device("cpu"), fill)
    slots = torch.cat([g.index for g in layout.groups])
    assert sorted(layout.order.tolist()) == sorted(set(layout.order.tolist()))  # distinct slots
    assert torch.equal(slots[layout.order], torch.arange(boundaries[-1]))  # each token's slot holds that token
    sample_of = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    for group in layout.groups:
        rows = group.index.view(group.count, group.width)
        assert all(len(set(sample_of[r].tolist())) == 1 for r in rows)  # padding repeats the sample's own token
        row_lengths = [len(set(r.tolist())) for r in rows]
        assert max(row_lengths) == group.width
        assert group.count == 1 or min(row_lengths) >= fill * group.width
    assert sum(g.count for g in layout.groups) == sum(1 for n in lengths if n)
    if fill > 1:
        assert all(g.count == 1 for g in layout.groups)


def test_bad_boundaries_and_head_counts_are_refused():
    q, k, v, _ = inputs(10, 4, 2)
    with pytest.raises(ValueError, match="do not partition 10 tokens"):
        packed_causal_attention(q, k, v, [0, 6, 4, 10], scale=1.0)
    with pytest.raises(ValueError, match="do not partition 10 tokens"):
        packed_causal_attention(q, k, v, [0, 6, 12], scale=1.0)
    with pytest.raises(ValueError, match="do not partition"):
        packed_causal_attention(q, k, v, [2, 10], scale=1.0)
    q3, k3, v3, _ = inputs(10, 3, 2)
    with pytest.raises(ValueError, match="3 query heads are not a multiple of 2 KV groups"):
        packed_causal_attention(q3, k3, v3, [0, 10], scale=1.0)
