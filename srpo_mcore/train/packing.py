"""Micro-batch planning: balance sequences over data-parallel ranks, pack each rank under a token budget.

    plan = plan_micro_batches(lengths, num_ranks=dp_size, token_budget=train.max_tokens_per_micro_batch)
    for i in range(plan.num_micro_batches):
        ids = plan.micro_batch(dp_rank, i)        # np.int64 indices into the rollout batch

Every rank gets the same number of micro-batches (Megatron's schedule runs the same count everywhere); when
a rank has fewer sequences than that, some of its micro-batches are empty and the trainer must run a dummy
micro-batch (e.g. one padding token with zero loss weight) for them. Balancing is by token count, i.e.
linear cost; attention's quadratic part is not modelled.

The work is done by the native extension ``srpo_mcore._C`` (csrc/packing.cpp, which documents the algorithm
step by step). :func:`plan_micro_batches_reference` is the same algorithm in plain Python, written for
clarity (first fit by linear scan where C++ uses a segment tree); tests require identical results.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BACKENDS = ("native", "reference")


@dataclass(frozen=True)
class MicroBatchPlan:
    """Sequence indices per rank and micro-batch, in CSR form: micro-batch ``(rank, i)`` is
    ``indices[offsets[rank * M + i] : offsets[rank * M + i + 1]]`` with ``M = num_micro_batches``."""

    indices: np.ndarray  # int64 [num_sequences]
    offsets: np.ndarray  # int64 [num_ranks * num_micro_batches + 1]
    num_ranks: int
    num_micro_batches: int  # the same on every rank
    micro_batch_tokens: np.ndarray  # int64 [num_ranks, num_micro_batches]

    def micro_batch(self, rank: int, i: int) -> np.ndarray:
        if not (0 <= rank < self.num_ranks and 0 <= i < self.num_micro_batches):
            raise IndexError(
                f"no micro-batch ({rank}, {i}) in a {self.num_ranks} x {self.num_micro_batches} plan"
            )
        k = rank * self.num_micro_batches + i
        return self.indices[self.offsets[k] : self.offsets[k + 1]]

    def rank_micro_batches(self, rank: int) -> list[np.ndarray]:
        return [self.micro_batch(rank, i) for i in range(self.num_micro_batches)]

    @property
    def rank_tokens(self) -> np.ndarray:
        return self.micro_batch_tokens.sum(axis=1)

    @property
    def imbalance(self) -> float:
        """(max - mean) / mean of the ranks' token totals; 0 is perfect."""
        totals = self.rank_tokens
        mean = totals.mean() if totals.size else 0.0
        return float((totals.max() - mean) / mean) if mean > 0 else 0.0


def plan_micro_batches(
    lengths: Sequence[int] | np.ndarray,
    *,
    num_ranks: int,
    token_budget: int,
    equal_counts: bool = False,
    min_micro_batches: int = 1,
    backend: str = "native",
) -> MicroBatchPlan:
    """Balance ``lengths`` (tokens per sequence) over ``num_ranks`` and pack each rank's share into
    micro-batches of at most ``token_budget`` tokens, ``max(needed, min_micro_batches)`` on every rank.

    ``equal_counts`` also makes the ranks' sequence counts differ by at most one. A sequence longer than
    ``token_budget`` raises ValueError.
    """
    array = _check_lengths(lengths)
    if backend == "native":
        indices, offsets, m = _native().plan_micro_batches(
            array, num_ranks, token_budget, equal_counts, min_micro_batches
        )
    elif backend == "reference":
        indices, offsets, m = plan_micro_batches_reference(
            array.tolist(), num_ranks, token_budget, equal_counts, min_micro_batches
        )
    else:
        raise ValueError(f"backend={backend!r}, expected one of {BACKENDS}")
    indices = np.asarray(indices, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    cumulative = np.concatenate([[0], np.cumsum(array[indices])])
    tokens = (cumulative[offsets[1:]] - cumulative[offsets[:-1]]).reshape(num_ranks, m)
    return MicroBatchPlan(
        indices=indices,
        offsets=offsets,
        num_ranks=num_ranks,
        num_micro_batches=int(m),
        micro_batch_tokens=tokens,
    )


def _check_lengths(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(lengths)
    if array.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"lengths must be integers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)


def _native():
    try:
        from srpo_mcore import _C
    except ImportError as e:
        raise ImportError(
            "the native extension srpo_mcore._C is not built (csrc/packing.cpp); build it with "
            "`.venv/bin/pip install --no-deps --no-build-isolation -e .`, or pass backend='reference' "
            f"for the slow pure-Python planner ({e})"
        ) from e
    return _C


# ------------------------------------------------------------------------------------ pure-Python reference


def plan_micro_batches_reference(
    lengths: list[int],
    num_ranks: int,
    token_budget: int,
    equal_counts: bool = False,
    min_micro_batches: int = 1,
) -> tuple[list[int], list[int], int]:
    """The algorithm of csrc/packing.cpp in plain Python; returns ``(indices, offsets, M)`` like ``_C``."""
    if num_ranks < 1 or token_budget < 1 or min_micro_batches < 1:
        raise ValueError(
            f"need num_ranks, token_budget, min_micro_batches >= 1, got "
            f"{num_ranks}, {token_budget}, {min_micro_batches}"
        )
    for i, length in enumerate(lengths):
        if length < 1:
            raise ValueError(f"sequence {i} has length {length}; every sequence needs at least one token")
        if length > token_budget:
            raise ValueError(
                f"sequence {i} has {length} tokens, more than the micro-batch token budget {token_budget}"
            )
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    balance = _balance_equal_counts if equal_counts else _balance_lpt
    packed = [_first_fit(lengths, rank, token_budget) for rank in balance(lengths, order, num_ranks)]
    m = max([min_micro_batches] + [len(bins) for bins in packed])
    indices, offsets = [], [0]
    for bins in packed:
        bins = _split_to_count(lengths, bins, m)
        bins = sorted(bins, key=lambda b: -sum(lengths[i] for i in b))  # stable: heaviest first
        for b in bins:
            indices.extend(b)
            offsets.append(len(indices))
    return indices, offsets, m


def _balance_lpt(lengths: list[int], order: list[int], num_ranks: int) -> list[list[int]]:
    lightest = [(0, r) for r in range(num_ranks)]
    ranks: list[list[int]] = [[] for _ in range(num_ranks)]
    for i in order:
        tokens, r = heapq.heappop(lightest)
        ranks[r].append(i)
        heapq.heappush(lightest, (tokens + lengths[i], r))
    return ranks


def _balance_equal_counts(lengths: list[int], order: list[int], num_ranks: int) -> list[list[int]]:
    ranks: list[list[int]] = [[] for _ in range(num_ranks)]
    load = [0] * num_ranks
    for start in range(0, len(order), num_ranks):
        by_load = sorted(range(num_ranks), key=lambda r: (load[r], r))
        for r, i in zip(by_load, order[start : start + num_ranks]):
            ranks[r].append(i)
            load[r] += lengths[i]
    return ranks


def _first_fit(lengths: list[int], items: list[int], budget: int) -> list[list[int]]:
    bins: list[list[int]] = []
    room: list[int] = []
    for i in items:
        b = next((b for b, free in enumerate(room) if free >= lengths[i]), len(bins))  # first with room
        if b == len(bins):
            bins.append([])
            room.append(budget)
        bins[b].append(i)
        room[b] -= lengths[i]
    return bins


def _split_to_count(lengths: list[int], bins: list[list[int]], target: int) -> list[list[int]]:
    bins = [list(b) for b in bins]
    while len(bins) < target:
        splittable = [b for b in range(len(bins)) if len(bins[b]) >= 2]
        if not splittable:
            break
        heaviest = max(splittable, key=lambda b: (sum(lengths[i] for i in bins[b]), -b))
        first, second, first_tokens, second_tokens = [], [], 0, 0
        for i in bins[heaviest]:
            if first_tokens <= second_tokens:
                first.append(i)
                first_tokens += lengths[i]
            else:
                second.append(i)
                second_tokens += lengths[i]
        bins[heaviest] = first
        bins.append(second)
    return bins + [[] for _ in range(target - len(bins))]
