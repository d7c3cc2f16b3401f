"""One TP rank's Megatron shard written straight into the full Hugging Face tensors (the scatter form of
:func:`srpo_mcore.model.hf_layout.to_hf_tensors`).

``to_hf_tensors`` needs every TP rank's shard in one place and builds the HF tensors with concatenations and
copies. When the ranks share memory (one node, CPU), each TP rank can instead copy its own shard into its rows or
columns of HF tensors that live in a shared buffer: every element is written once, by its owner, and the readers
get finished HF tensors without any further copy. :func:`scatter_shard` is that write. ``to_hf_tensors`` stays the
reference: tests/rollout/test_layout.py checks that all TP ranks' scatters rebuild exactly its output.
"""

from __future__ import annotations

import torch

from srpo_mcore.config.model import ModelConfig
from srpo_mcore.model.hf_layout import ParamMap


def scatter_shard(pm: ParamMap, shard: torch.Tensor, out: list[torch.Tensor], model: ModelConfig, tp_rank: int,
                  tp_size: int) -> None:
    """Copy TP rank ``tp_rank``'s Megatron ``shard`` into ``out``: the full HF tensors named by ``pm.hf_names``
    (same order, HF shapes, any dtype; the copy casts). Replicated parameters are written by TP rank 0 only."""
    if pm.kind in ("embed", "lm_head"):
        (dst,) = out
        rows = shard.shape[0]
        lo, hi = tp_rank * rows, min((tp_rank + 1) * rows, model.vocab_size)  # rows >= vocab_size are padding
        if hi > lo:
            dst[lo:hi].copy_(shard[: hi - lo])
    elif pm.kind in ("qkv_weight", "qkv_bias"):
        g_total, hd = model.num_query_groups, model.head_dim
        hpg = model.num_attention_heads // g_total
        g_local = g_total // tp_size
        tail = shard.shape[1:]
        grouped = shard.reshape(g_local, (hpg + 2) * hd, *tail)
        q, k, v = grouped.split([hpg * hd, hd, hd], dim=1)
        first = tp_rank * g_local
        for dst, src, rows in zip(out, (q, k, v), (hpg * hd, hd, hd)):
            dst.view(g_total, rows, *tail)[first:first + g_local].copy_(src)
    elif pm.kind == "gate_up":
        gate, up = shard.chunk(2, dim=0)
        rows = gate.shape[0]
        out[0][tp_rank * rows:(tp_rank + 1) * rows].copy_(gate)
        out[1][tp_rank * rows:(tp_rank + 1) * rows].copy_(up)
    elif pm.tp_split_dim is None:
        if tp_rank == 0:
            out[0].copy_(shard)
    else:
        dim = pm.tp_split_dim
        size = shard.shape[dim]
        out[0].narrow(dim, tp_rank * size, size).copy_(shard)
