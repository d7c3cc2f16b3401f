"""Rotary embedding for packed (THD) micro-batches with Megatron's local layer spec: one frequency row per token.

Megatron's ``RotaryEmbedding`` hands attention frequencies for positions ``0 .. longest sample - 1``; its unfused
THD RoPE (``rope_utils._apply_rotary_pos_emb_thd``) then rotates a packed row one sample at a time (a Python loop
of slices, rotations and copies, in the forward and again in autograd's backward). Given frequencies with one row
per packed token instead, the same function takes its "exact mapping" branch and rotates the whole row with one
``_apply_rotary_pos_emb_bshd`` call. :class:`PackedRotaryEmbedding` supplies those rows: ``GPTModel._preprocess``
first asks it for the rotary length (``get_rotary_seq_len``, which receives the micro-batch's ``PackedSeqParams``;
the wrapper records the sample boundaries there), then for the frequencies (``forward(..., packed_seq=True)``),
which it returns indexed by each token's position in its sample (restarting at 0 at every boundary, as
``MicroBatch.position_ids`` and Hugging Face's per-sample positions do). Padded (non-THD) input is unchanged.

Placed by :func:`srpo_mcore.model.qwen2.build_model` on the local spec only; Transformer Engine's spec keeps
Megatron's ``RotaryEmbedding``.
"""

from __future__ import annotations

import functools

import torch

from srpo_mcore.model.forward import segment_positions
from srpo_mcore.model.packed_attention import packed_boundaries


@functools.lru_cache(maxsize=16)
def packed_positions(boundaries: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``[boundaries[-1]]`` positions of the tokens in their samples: ``0 .. n-1`` for each ``[b_i, b_{i+1})`` (the
    micro-batch's ``position_ids``, cached per boundaries: every layer's attention asks)."""
    return segment_positions(torch.tensor(boundaries), boundaries[-1], device)


class PackedRotaryEmbedding(torch.nn.Module):
    """A Megatron ``RotaryEmbedding`` (``rotary``) that returns per-token frequencies ``[t, 1, 1, dim]`` for packed
    (THD) micro-batches. Holds no parameters or buffers (neither does ``RotaryEmbedding``): checkpoints are
    unchanged."""

    def __init__(self, rotary: torch.nn.Module):
        super().__init__()
        self.rotary = rotary
        self._boundaries: tuple[int, ...] | None = None

    def get_rotary_seq_len(self, inference_context, transformer, transformer_input, transformer_config,
                           packed_seq_params=None, **kwargs) -> int:
        thd = packed_seq_params is not None and packed_seq_params.qkv_format == "thd"
        self._boundaries = tuple(packed_boundaries(packed_seq_params)) if thd else None
        return self.rotary.get_rotary_seq_len(inference_context, transformer, transformer_input, transformer_config,
                                              packed_seq_params, **kwargs)

    def forward(self, max_seq_len: int, offset: int = 0, packed_seq: bool = False, cp_group=None) -> torch.Tensor:
        freqs = self.rotary(max_seq_len, offset, packed_seq, cp_group)  # [max_seq_len, 1, 1, dim]
        if not packed_seq:
            return freqs
        if self._boundaries is None:
            raise RuntimeError("PackedRotaryEmbedding: packed frequencies asked for before get_rotary_seq_len saw the "
                               "micro-batch's THD PackedSeqParams (GPTModel._preprocess calls the two in that order)")
        boundaries, self._boundaries = self._boundaries, None
        return freqs.index_select(0, packed_positions(boundaries, freqs.device))
