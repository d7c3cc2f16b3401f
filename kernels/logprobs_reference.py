"""PyTorch reference for :mod:`srpo_kernels.logprobs`: the specification, the fp64 test oracle, the torch backend.

Math (per token ``i`` with target ``y``; ``z = logits / temperature`` over the real vocabulary only, padded
columns excluded)::

    lse_i     = log sum_j exp(z_ij)                 (over all TP shards)
    logp_i    = z_iy - lse_i                        (0 where y == ignore_index;
                                                     -inf where y is a padded column: probability zero)
    entropy_i = -sum_j p_ij log p_ij,  p = softmax(z)   (0 where y == ignore_index)

Plain autograd gives the gradients. TP sums go through :func:`srpo_kernels._tp.reduce_from_tp` (all-reduce
forward, identity backward: what consumes them is replicated); the one replicated value that feeds rank-local
terms (``lse`` in the entropy) goes through :func:`srpo_kernels._tp.copy_to_tp` (identity forward, all-reduce
backward); the TP max is detached (the log-sum-exp does not depend on the shift). Math runs in ``promote(logits.dtype, float32)``: float32 for 16-bit logits, float64 for the oracle.

With ``chunk_size`` the tokens are processed in chunks under activation checkpointing, so at most one
chunk's ``[chunk, V/TP]`` float32 temporaries live at a time (forward and backward); that is the torch
backend the trainer uses on CPU.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from srpo_kernels._tp import ProcessGroup, VocabShard, all_reduce_, copy_to_tp, reduce_from_tp
from torch.utils.checkpoint import checkpoint


def reference_logprobs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    vocab_size: int | None = None,
    temperature: float = 1.0,
    ignore_index: int = -100,
    compute_entropy: bool = False,
    tp_group: ProcessGroup | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token ``log p(target)`` and optionally the entropy, from this rank's vocab shard of the logits.

    Args:
        logits: ``[..., V/TP]`` logits shard of TP rank ``r`` (global columns ``[r*V/TP, (r+1)*V/TP)``).
        targets: ``[...]`` global target ids in ``[0, vocab_size)``, or ``ignore_index``.
        vocab_size: true vocabulary size; columns at or beyond it are padding. ``None``: no padding.
        temperature: logits are divided by it (in the math dtype) before the softmax.
        ignore_index: targets equal to it give ``logp = entropy = 0`` and no gradient.
        compute_entropy: also return the entropy of the (tempered) distribution.
        tp_group: the tensor-parallel group the vocabulary is split over (``None``: one rank).
        chunk_size: process this many tokens at a time under activation checkpointing (``None``: all).

    Returns:
        ``(logp, entropy)`` shaped like ``targets`` in the math dtype; ``entropy`` is ``None`` unless asked.
    """
    _check_inputs(logits, targets, temperature)
    shard = VocabShard.of(logits.shape[-1], tp_group, vocab_size)
    flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    n_tokens = flat_targets.numel()
    args = (shard, temperature, ignore_index, compute_entropy, tp_group)

    if chunk_size is None or chunk_size >= n_tokens:
        logp, entropy = _logprobs_chunk(flat_logits, flat_targets, *args)
    else:
        use_checkpoint = torch.is_grad_enabled() and logits.requires_grad
        parts = []
        for lg, tg in zip(flat_logits.split(chunk_size), flat_targets.split(chunk_size)):
            if use_checkpoint:
                parts.append(checkpoint(_logprobs_chunk, lg, tg, *args, use_reentrant=False))
            else:
                parts.append(_logprobs_chunk(lg, tg, *args))
        logp = torch.cat([p[0] for p in parts])
        entropy = torch.cat([p[1] for p in parts]) if compute_entropy else None

    logp = logp.view(targets.shape)
    return logp, (entropy.view(targets.shape) if entropy is not None else None)


def _logprobs_chunk(
    logits: torch.Tensor,
    targets: torch.Tensor,
    shard: VocabShard,
    temperature: float,
    ignore_index: int,
    compute_entropy: bool,
    group: ProcessGroup | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    math_dtype = torch.promote_types(logits.dtype, torch.float32)
    n_tokens = targets.numel()
    z = logits[:, : shard.n_valid].to(math_dtype) / temperature  # padded columns dropped

    if shard.n_valid > 0:
        shift = z.detach().amax(dim=-1)
    else:
        shift = z.new_full((n_tokens,), float("-inf"))
    all_reduce_(shift, group, op=dist.ReduceOp.MAX)
    sum_exp = reduce_from_tp(torch.exp(z - shift[:, None]).sum(dim=-1), group)
    lse = shift + torch.log(sum_exp)

    local = targets - shard.col_start
    in_shard = (local >= 0) & (local < shard.n_valid)
    if shard.n_valid > 0:
        gathered = z.gather(1, local.clamp(0, shard.n_valid - 1)[:, None]).squeeze(1)
        local_target_logit = torch.where(in_shard, gathered, 0.0)
    else:
        local_target_logit = z.new_zeros(n_tokens)
    target_logit = reduce_from_tp(local_target_logit, group)
    is_real = (targets >= 0) & (targets < shard.vocab_size)  # else a padded column: probability zero
    target_logit = torch.where(is_real, target_logit, float("-inf"))

    ignored = targets == ignore_index
    logp = torch.where(ignored, 0.0, target_logit - lse)
    if not compute_entropy:
        return logp, None
    # lse is replicated but feeds rank-local terms here: copy_to_tp sums their partial gradients over TP.
    log_p = z - copy_to_tp(lse, group)[:, None]
    entropy = reduce_from_tp(-(torch.exp(log_p) * log_p).sum(dim=-1), group)
    return logp, torch.where(ignored, 0.0, entropy)


def _check_inputs(logits: torch.Tensor, targets: torch.Tensor, temperature: float, name: str = "logits") -> None:
    """Shared argument checks: ``logits`` (or hidden states) ``[..., D]`` float, ``targets`` ``[...]`` int."""
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {logits.dtype}")
    if targets.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"targets must be int32 or int64 token ids, got {targets.dtype}")
    if logits.dim() == 0 or logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"{name} {tuple(logits.shape)} must be targets {tuple(targets.shape)} plus one last dimension"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
