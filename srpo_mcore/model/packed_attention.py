"""Core attention for packed (THD) micro-batches with Megatron's local layer spec.

A packed micro-batch is one row of several samples laid end to end; ``PackedSeqParams(qkv_format="thd",
cu_seqlens_q=...)`` marks where each sample starts. Megatron's ``SelfAttention`` then squeezes the batch dimension
and applies RoPE (positions restart at 0 at every ``cu_seqlens`` boundary; :mod:`srpo_mcore.model.packed_rope`)
before calling the core attention with ``[tokens, heads, head_dim]`` tensors. Transformer Engine's core attention
(the GPU spec) runs these through its varlen kernels; Megatron's local ``DotProductAttention`` refuses them.
:class:`PackedDotProductAttention` is the local spec's replacement: the same module for padded ``[s, b, h, d]`` input
(it defers to Megatron's), and for THD input a causal softmax attention inside each sample and nothing across
samples. It is placed in the layer spec by :func:`srpo_mcore.model.qwen2.layer_spec`: the one seam between the CPU
and GPU attention kernels.

How THD input is computed (:func:`packed_causal_attention`): the samples are sorted by length and cut into groups of
similar lengths (:func:`packed_layout`); each group is gathered into a right-padded ``[n, heads, width, head_dim]``
batch with one index, runs one ``scaled_dot_product_attention(is_causal=True)`` (causal + right padding: a real
query never sees a padded key), and one more index puts the real tokens back in row order. A group of one sample is
the per-sample attention; a row of many short samples is a few calls instead of one per sample. The layout depends
only on ``cu_seqlens``, so it is built once per micro-batch and shared by every layer (a small cache keyed by the
boundaries).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from megatron.core.transformer.dot_product_attention import DotProductAttention

# A sample joins the group of a longer one when it is at least this fraction of that one's length, so a padded group
# holds at most 1 / GROUP_FILL times its samples' tokens and 1 / GROUP_FILL**2 times their attention scores; chosen by
# benchmarks/packed_attention.py (fewer SDPA calls vs less padding).
GROUP_FILL = 0.5


class PackedDotProductAttention(DotProductAttention):
    """Megatron's local core attention, plus the THD (packed sequences) format."""

    def forward(self, query, key, value, attention_mask, attn_mask_type=None, attention_bias=None,
                packed_seq_params=None):
        if packed_seq_params is None:
            return super().forward(query, key, value, attention_mask, attn_mask_type=attn_mask_type,
                                   attention_bias=attention_bias)
        if packed_seq_params.qkv_format != "thd":
            raise ValueError(f"packed attention supports qkv_format='thd', got {packed_seq_params.qkv_format!r}")
        if attention_bias is not None:
            raise ValueError("packed attention does not take an attention bias")
        return packed_causal_attention(query, key, value, packed_boundaries(packed_seq_params), scale=self.softmax_scale,
                                       dropout_p=self.config.attention_dropout if self.training else 0.0)


def packed_boundaries(params) -> list[int]:
    """The sample boundaries of a THD micro-batch's ``PackedSeqParams`` (the padded ones where given); self-attention:
    the key boundaries must be the query's."""
    cu = params.cu_seqlens_q_padded if params.cu_seqlens_q_padded is not None else params.cu_seqlens_q
    kv = params.cu_seqlens_kv_padded if params.cu_seqlens_kv_padded is not None else params.cu_seqlens_kv
    if kv is not None and kv is not cu and not torch.equal(cu.cpu(), kv.cpu()):
        raise ValueError("packed self-attention needs cu_seqlens_q == cu_seqlens_kv")
    return cu.tolist()


def _checked_segments(boundaries: list[int], tokens: int) -> tuple[int, ...]:
    """``boundaries`` as a tuple covering all ``tokens`` (tokens past the last boundary, none normally, become one
    more segment)."""
    if boundaries[0] != 0 or any(b > e for b, e in zip(boundaries, boundaries[1:])) or boundaries[-1] > tokens:
        raise ValueError(f"cu_seqlens {boundaries} do not partition {tokens} tokens")
    if boundaries[-1] < tokens:
        boundaries = [*boundaries, tokens]
    return tuple(boundaries)


@dataclass(frozen=True)
class PaddedGroup:
    """Samples attended as one right-padded batch: ``index`` ``[count * width]`` holds the row's token at each padded
    slot (slots past a sample's end repeat its last token; causal attention keeps them from real queries)."""

    index: torch.Tensor
    count: int
    width: int

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """``[t, h, d]`` row -> ``[count, h, width, d]`` padded batch (SDPA's layout)."""
        return x.index_select(0, self.index).view(self.count, self.width, *x.shape[1:]).transpose(1, 2)


@dataclass(frozen=True)
class PackedLayout:
    """A packed row as padded groups: ``order`` ``[tokens]`` is where each token's output lies in the groups' padded
    outputs laid end to end."""

    groups: tuple[PaddedGroup, ...]
    order: torch.Tensor


@functools.lru_cache(maxsize=16)
def packed_layout(boundaries: tuple[int, ...], device: torch.device, fill: float = GROUP_FILL) -> PackedLayout:
    """The grouping of the samples ``[boundaries[i], boundaries[i+1])`` (each non-empty one in exactly one group):
    longest first, a sample joins the current group while its length is at least ``fill`` x the group's longest
    (``fill`` > 1: every sample alone)."""
    starts = boundaries[:-1]
    lengths = [e - s for s, e in zip(boundaries, boundaries[1:])]
    by_length = sorted((i for i, n in enumerate(lengths) if n), key=lambda i: -lengths[i])
    members: list[list[int]] = []
    for i in by_length:
        if members and lengths[i] >= fill * lengths[members[-1][0]]:
            members[-1].append(i)
        else:
            members.append([i])
    groups, order, offset = [], [0] * boundaries[-1], 0
    for samples in members:
        width = lengths[samples[0]]
        slots: list[int] = []
        for row, i in enumerate(samples):
            last = starts[i] + lengths[i] - 1
            slots.extend(min(starts[i] + j, last) for j in range(width))
            base = offset + row * width
            order[starts[i]:starts[i] + lengths[i]] = range(base, base + lengths[i])
        groups.append(PaddedGroup(torch.tensor(slots, dtype=torch.long, device=device), len(samples), width))
        offset += len(samples) * width
    return PackedLayout(tuple(groups), torch.tensor(order, dtype=torch.long, device=device))


def packed_causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, boundaries: list[int], *,
                            scale: float, dropout_p: float = 0.0, fill: float = GROUP_FILL) -> torch.Tensor:
    """Causal attention within each ``[boundaries[i], boundaries[i+1])`` segment of a packed sequence.

    ``query`` ``[t, np, hn]``; ``key`` / ``value`` ``[t, ng, hn]`` with ``np`` a multiple of ``ng`` (grouped-query
    attention: query head ``h`` reads KV group ``h // (np // ng)``, as Megatron's local attention does). Tokens past
    ``boundaries[-1]`` (none, normally) attend only to themselves as one more segment. ``fill``: the grouping of
    :func:`packed_layout`. Returns ``[t, np * hn]``."""
    t, heads, dim = query.shape
    groups = key.shape[1]
    if heads % groups:
        raise ValueError(f"{heads} query heads are not a multiple of {groups} KV groups")
    layout = packed_layout(_checked_segments(boundaries, t), query.device, fill)
    outputs = []
    for group in layout.groups:
        out = F.scaled_dot_product_attention(group.gather(query), group.gather(key), group.gather(value),
                                             is_causal=True, scale=scale, dropout_p=dropout_p,
                                             enable_gqa=groups != heads)
        outputs.append(out.transpose(1, 2).reshape(group.count * group.width, heads * dim))
    if not outputs:
        return query.new_empty(0, heads * dim)
    padded_out = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
    return padded_out.index_select(0, layout.order)


def per_sample_causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, boundaries: list[int],
                                *, scale: float) -> torch.Tensor:
    """The reference :func:`packed_causal_attention` is checked and benchmarked against: one
    ``scaled_dot_product_attention`` per sample, KV heads repeated for grouped-query attention."""
    t, heads, dim = query.shape
    repeat = heads // key.shape[1]
    segments = _checked_segments(boundaries, t)
    out = query.new_empty(t, heads, dim)
    for start, end in zip(segments, segments[1:]):
        if end == start:
            continue
        q = query[start:end].transpose(0, 1)  # [np, s, hn]
        k = key[start:end].transpose(0, 1).repeat_interleave(repeat, dim=0)
        v = value[start:end].transpose(0, 1).repeat_interleave(repeat, dim=0)
        out[start:end] = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale).transpose(0, 1)
    return out.reshape(t, heads * dim)
