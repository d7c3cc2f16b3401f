"""Test helper: per-token log-probs from the (TP/PP-sharded) Megatron model, to compare with vLLM's.

An independent, plain-PyTorch, forward-only reference: the last PP stage's vocab-parallel logits ``[b, s, padded_vocab / TP]`` go
through a log-softmax reduced over the TP group, with the padded vocabulary columns (``>= vocab_size``) left out,
exactly as vLLM sees the real vocabulary only. The trainer (and so the stale-weight guard) uses the fused kernel in
``kernels/``; this one backs the rollout tests' parity checks (vLLM vs Megatron after a weight sync).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from srpo_mcore.distributed import ParallelState
from srpo_mcore.model.forward import MicroBatch, forward_backward, round_up, sequence_multiple


@torch.no_grad()
def vocab_parallel_logprobs(logits: torch.Tensor, targets: torch.Tensor, *, vocab_size: int, tp_group,
                            tp_rank: int, temperature: float = 1.0) -> torch.Tensor:
    """``log softmax(logits / temperature)[target]`` in float32 from this TP rank's vocab shard ``[..., V/TP]``
    (global columns ``[tp_rank * V/TP, (tp_rank + 1) * V/TP)``); columns ``>= vocab_size`` are excluded."""
    z = logits.float() / temperature
    width = z.shape[-1]
    start = tp_rank * width
    valid = max(0, min(width, vocab_size - start))
    z = z[..., :valid]
    shift = z.amax(dim=-1) if valid else z.new_full(targets.shape, float("-inf"))
    _all_reduce(shift, dist.ReduceOp.MAX, tp_group)
    sum_exp = torch.exp(z - shift.unsqueeze(-1)).sum(dim=-1)
    _all_reduce(sum_exp, dist.ReduceOp.SUM, tp_group)
    local = targets - start
    inside = (local >= 0) & (local < valid)
    if valid:
        picked = z.gather(-1, local.clamp(0, valid - 1).unsqueeze(-1)).squeeze(-1)
        picked = torch.where(inside, picked, torch.zeros_like(picked))
    else:
        picked = torch.zeros(targets.shape, device=z.device)
    _all_reduce(picked, dist.ReduceOp.SUM, tp_group)
    return picked - shift - torch.log(sum_exp)


def _all_reduce(t: torch.Tensor, op, group) -> None:
    if group is not None and dist.get_world_size(group) > 1:
        dist.all_reduce(t, op=op, group=group)


@torch.no_grad()
def megatron_logprobs(model_chunk: torch.nn.Module, state: ParallelState, sequences: Sequence[Sequence[int]], *,
                      vocab_size: int, temperature: float = 1.0, to_all_stages: bool = True
                      ) -> list[torch.Tensor] | None:
    """``log p(token t | tokens < t)`` for t = 1..L-1 of each sequence (float32, one tensor per sequence).

    Collective over the TP and PP groups. The result exists on the last PP stage; with ``to_all_stages`` it is
    broadcast to every stage, else other stages get ``None``. One right-padded micro-batch (causal attention makes
    the padding harmless to real tokens)."""
    lengths = [len(s) for s in sequences]
    if min(lengths) < 2:
        raise ValueError("every sequence needs at least two tokens")
    width = round_up(max(lengths), sequence_multiple(model_chunk.config))  # right padding: harmless (causal)
    ids = torch.zeros(len(sequences), width, dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, :len(seq)] = torch.tensor(list(seq), dtype=torch.long)
    captured: dict[str, torch.Tensor] = {}

    def capture(logits, mb):
        captured["lp"] = vocab_parallel_logprobs(logits[:, :-1], mb.input_ids[:, 1:], vocab_size=vocab_size,
                                                 tp_group=state.tp_group, tp_rank=state.tp_rank,
                                                 temperature=temperature)
        return logits.sum() * 0, torch.tensor(1, device=logits.device), {}

    forward_backward(model_chunk, [MicroBatch(ids, {}).to(state.device)], capture, forward_only=True)
    lp = captured.get("lp")
    if state.pp_size > 1 and to_all_stages:
        if lp is None:
            lp = torch.empty(len(sequences), width - 1, device=state.device)
        last = dist.get_process_group_ranks(state.pp_group)[-1]
        dist.broadcast(lp, src=last, group=state.pp_group)
    if lp is None:
        return None
    lp = lp.cpu()
    return [lp[i, :n - 1] for i, n in enumerate(lengths)]
