"""Tensor-parallel plumbing shared by the vocab-parallel kernels and their references.

Megatron splits the output layer (and so the logits) by rows of the vocabulary: TP rank ``r`` of ``P`` holds
global columns ``[r * Vs, (r + 1) * Vs)`` of the *padded* vocabulary (``P * Vs`` columns, padded so that it
divides by ``make_vocab_size_divisible_by * P``). Columns at or beyond the true vocabulary size are padding:
every op here treats them as ``-inf`` logits (zero probability, zero gradient).

``group=None`` means a single rank: no collective is issued. Process groups are always passed explicitly;
nothing here reads Megatron's global parallel state, so the package does not depend on Megatron.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

ProcessGroup = dist.ProcessGroup


def rank_and_size(group: ProcessGroup | None) -> tuple[int, int]:
    """(rank, world size) of this process in ``group``; (0, 1) for ``None``."""
    if group is None:
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


@dataclass(frozen=True)
class VocabShard:
    """Where this rank's vocab shard lies in the global (padded) vocabulary.

    ``col_start``: global id of the shard's first column. ``n_valid``: how many leading columns of the shard
    are real vocabulary (the rest, if any, are padding). ``vocab_size``: the true global vocabulary size.
    """

    rank: int
    world: int
    shard_size: int
    vocab_size: int

    @property
    def col_start(self) -> int:
        return self.rank * self.shard_size

    @property
    def n_valid(self) -> int:
        return max(0, min(self.shard_size, self.vocab_size - self.col_start))

    @classmethod
    def of(cls, shard_size: int, group: ProcessGroup | None, vocab_size: int | None) -> VocabShard:
        rank, world = rank_and_size(group)
        padded = shard_size * world
        if vocab_size is None:
            vocab_size = padded
        if not 0 < vocab_size <= padded:
            raise ValueError(
                f"vocab_size={vocab_size} must lie in (0, {padded}] = (0, TP size {world} x shard width "
                f"{shard_size}]; pass the true (unpadded) vocabulary size, or None when there is no padding"
            )
        return cls(rank=rank, world=world, shard_size=shard_size, vocab_size=vocab_size)


def all_gather_stacked(t: torch.Tensor, group: ProcessGroup | None) -> torch.Tensor:
    """``[world, *t.shape]``: every rank's ``t`` stacked in rank order (one collective)."""
    _, world = rank_and_size(group)
    if world == 1:
        return t.unsqueeze(0)
    flat = t.contiguous().view(-1)
    out = flat.new_empty(world * flat.numel())  # 1-D in and out: the layout every backend accepts
    _all_gather_single(out, flat, group=group)
    return out.view(world, *t.shape)


# torch >= 2.13 renamed all_gather_into_tensor to all_gather_single (the old name warns there).
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def all_reduce_(t: torch.Tensor, group: ProcessGroup | None, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """In-place all-reduce over ``group``; a no-op for a single rank."""
    if rank_and_size(group)[1] > 1:
        dist.all_reduce(t, op=op, group=group)
    return t


class _ReduceFromTP(torch.autograd.Function):
    """Sum over TP ranks forward; identity backward (the result is replicated, so is its gradient).

    The same contract as Megatron's ``reduce_from_tensor_model_parallel_region``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: ProcessGroup | None) -> torch.Tensor:
        return all_reduce_(x.clone(), group)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class _CopyToTP(torch.autograd.Function):
    """Identity forward; sum over TP ranks backward (each rank holds a partial gradient of a replicated input).

    The same contract as Megatron's ``copy_to_tensor_model_parallel_region``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, group: ProcessGroup | None) -> torch.Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return all_reduce_(grad.clone(), ctx.group), None


def reduce_from_tp(x: torch.Tensor, group: ProcessGroup | None) -> torch.Tensor:
    """Differentiable TP sum of a value every rank then uses identically (see :class:`_ReduceFromTP`)."""
    return x if rank_and_size(group)[1] == 1 else _ReduceFromTP.apply(x, group)


def copy_to_tp(x: torch.Tensor, group: ProcessGroup | None) -> torch.Tensor:
    """Mark a replicated input whose gradient must be summed over TP ranks (see :class:`_CopyToTP`)."""
    return x if rank_and_size(group)[1] == 1 else _CopyToTP.apply(x, group)
