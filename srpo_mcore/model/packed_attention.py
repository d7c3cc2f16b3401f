"""Core attention for packed (THD) micro-batches with Megatron's local layer spec.

A packed micro-batch is one row of several samples laid end to end; ``PackedSeqParams(qkv_format="thd",
cu_seqlens_q=...)`` marks where each sample starts. Megatron's ``SelfAttention`` then squeezes the batch dimension
and applies RoPE per sample (positions restart at 0 at every ``cu_seqlens`` boundary) before calling the core
attention with ``[tokens, heads, head_dim]`` tensors. Transformer Engine's core attention (the GPU spec) runs
these through its varlen kernels; Megatron's local ``DotProductAttention`` refuses them. :class:`PackedDotProductAttention`
is the local spec's replacement: the same module for padded ``[s, b, h, d]`` input (it defers to Megatron's), and
for THD input a causal softmax attention inside each sample and nothing across samples, with PyTorch's
``scaled_dot_product_attention`` per sample. It is placed in the layer spec by :func:`srpo_mcore.model.qwen2.layer_spec`:
the one seam between the CPU and GPU attention kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.transformer.dot_product_attention import DotProductAttention


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
        return packed_causal_attention(query, key, value, _boundaries(packed_seq_params), scale=self.softmax_scale,
                                       dropout_p=self.config.attention_dropout if self.training else 0.0)


def _boundaries(params) -> list[int]:
    cu = params.cu_seqlens_q_padded if params.cu_seqlens_q_padded is not None else params.cu_seqlens_q
    kv = params.cu_seqlens_kv_padded if params.cu_seqlens_kv_padded is not None else params.cu_seqlens_kv
    if kv is not None and not torch.equal(cu.cpu(), kv.cpu()):
        raise ValueError("packed self-attention needs cu_seqlens_q == cu_seqlens_kv")
    return [int(x) for x in cu.tolist()]


def packed_causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, boundaries: list[int], *,
                            scale: float, dropout_p: float = 0.0) -> torch.Tensor:
    """Causal attention within each ``[boundaries[i], boundaries[i+1])`` segment of a packed sequence.

    ``query`` ``[t, np, hn]``; ``key`` / ``value`` ``[t, ng, hn]`` with ``np`` a multiple of ``ng`` (grouped-query
    attention: query head ``h`` reads KV group ``h // (np // ng)``, as Megatron's local attention does). Tokens past
    ``boundaries[-1]`` (none, normally) attend only to themselves as one more segment. Returns ``[t, np * hn]``."""
    t, heads, dim = query.shape
    groups = key.shape[1]
    if heads % groups:
        raise ValueError(f"{heads} query heads are not a multiple of {groups} KV groups")
    if boundaries[0] != 0 or any(b > e for b, e in zip(boundaries, boundaries[1:])) or boundaries[-1] > t:
        raise ValueError(f"cu_seqlens {boundaries} do not partition {t} tokens")
    if boundaries[-1] < t:
        boundaries = [*boundaries, t]
    out = query.new_empty(t, heads, dim)
    repeat = heads // groups
    for start, end in zip(boundaries, boundaries[1:]):
        if end == start:
            continue
        q = query[start:end].transpose(0, 1)  # [np, s, hn]
        k = key[start:end].transpose(0, 1).repeat_interleave(repeat, dim=0)
        v = value[start:end].transpose(0, 1).repeat_interleave(repeat, dim=0)
        out[start:end] = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale,
                                                        dropout_p=dropout_p).transpose(0, 1)
    return out.reshape(t, heads * dim)
