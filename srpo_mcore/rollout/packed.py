"""Rollout outputs between ranks as packed tensors, not pickled Python objects.

Every engine's samples reach every rank after generation (engine.py). At the paper's scale that is 256 x 32
responses of thousands of tokens each: as pickled tuples of Python ints and floats it costs a pickle and an
unpickle of tens of millions of objects on every rank, and ``all_gather_object`` pads every rank's contribution
to the largest one, so with rollout TP > 1 the ranks that send nothing (all but one per engine) still move as
many bytes as the largest engine.

Here a rank's outputs are one flat ``uint8`` buffer (:class:`RaggedRows`: fixed integer columns per row plus
ragged per-token token ids and values), and :func:`gather_from_engines` broadcasts each engine's buffer once from
its first rank, so the bytes moved are what the engines produced. Before that, every rank's buffer size and
SHA-256 go round (a small ``all_gather``): the ranks of one engine must have produced the same bytes, otherwise
:class:`RolloutDivergenceError` is raised on every rank.

Receivers keep the buffers: :meth:`RaggedRows.views` hands out per-row tensor views (8 bytes per token: int32 id,
float32 value), where Python records cost ~70 bytes per token (a tuple slot and an object per id and value).

Values travel as float32: vLLM computes log-probs as float32 (its ``log_softmax(dtype=float32)``) and converts
them with ``tolist()``, so they are float32 values and survive exactly; the trainer reads them as float32 too.
Token ids travel as int32 (vocabularies are far below 2**31).
"""

from __future__ import annotations

import array
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import torch
import torch.distributed as dist

_HEADER = 4  # int64 words: rows, meta columns, token ids, values


class RolloutDivergenceError(RuntimeError):
    """Ranks that must agree (the ranks of one engine, or all ranks on the prompt list) do not."""


@dataclass(frozen=True)
class RaggedRows:
    """``rows`` records, each with ``meta`` integers and a ragged run of ``lengths[i]`` tokens.

    ``token_ids`` (int32) holds every row's token ids back to back, or is empty for rows without ids;
    ``values`` (float32) holds one value per token, back to back."""

    meta: torch.Tensor  # int64 [rows, columns]
    lengths: torch.Tensor  # int64 [rows]
    token_ids: torch.Tensor  # int32 [sum(lengths)] or [0]
    values: torch.Tensor  # float32 [sum(lengths)]

    @classmethod
    def build(cls, meta: Sequence[Sequence[int]], values: Sequence[Sequence[float]],
              token_ids: Sequence[Sequence[int]] | None = None, *, columns: int) -> RaggedRows:
        """From per-row Python sequences (``token_ids[i]`` and ``values[i]`` of equal length)."""
        if len(values) != len(meta) or (token_ids is not None and len(token_ids) != len(meta)):
            raise ValueError(f"{len(meta)} meta rows, {len(values)} value rows"
                             + ("" if token_ids is None else f", {len(token_ids)} token-id rows"))
        lengths = [len(v) for v in values]
        if token_ids is not None:
            for i, (ids, n) in enumerate(zip(token_ids, lengths)):
                if len(ids) != n:
                    raise ValueError(f"row {i}: {len(ids)} token ids but {n} values")
        meta_t = torch.tensor(list(meta), dtype=torch.int64).reshape(len(meta), columns)
        return cls(meta=meta_t, lengths=torch.tensor(lengths, dtype=torch.int64),
                   token_ids=_flat(token_ids or (), "i", torch.int32),
                   values=_flat(values, "f", torch.float32))

    def to_bytes(self) -> torch.Tensor:
        """One contiguous ``uint8`` buffer (header, meta, lengths, token ids, values)."""
        rows, columns = self.meta.shape
        header = torch.tensor([rows, columns, self.token_ids.numel(), self.values.numel()], dtype=torch.int64)
        parts = (header, self.meta.reshape(-1), self.lengths, self.token_ids, self.values)
        return torch.cat([p.contiguous().view(torch.uint8) for p in parts])

    @classmethod
    def from_bytes(cls, buf: torch.Tensor) -> RaggedRows:
        header = buf[:_HEADER * 8].view(torch.int64).tolist()
        rows, columns, n_ids, n_values = header
        sizes = (rows * columns * 8, rows * 8, n_ids * 4, n_values * 4)
        if buf.numel() != _HEADER * 8 + sum(sizes):
            raise ValueError(f"packed rollout buffer of {buf.numel()} bytes does not match its header {header}")
        offset, pieces = _HEADER * 8, []
        for size, dtype in zip(sizes, (torch.int64, torch.int64, torch.int32, torch.float32)):
            pieces.append(buf[offset:offset + size].view(dtype))
            offset += size
        meta, lengths, token_ids, values = pieces
        return cls(meta=meta.reshape(rows, columns), lengths=lengths, token_ids=token_ids, values=values)

    def views(self) -> list[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """``(meta, token_ids, values)`` per row; ``token_ids`` and ``values`` are 1-D views into this buffer (no
        copy, no Python numbers; ``token_ids`` is empty without ids)."""
        lengths = self.lengths.tolist()
        values = torch.split(self.values, lengths)
        ids = torch.split(self.token_ids, lengths) if self.token_ids.numel() else [self.token_ids] * len(lengths)
        return list(zip(self.meta.tolist(), ids, values))

    def rows(self) -> list[tuple[list[int], tuple[int, ...], tuple[float, ...]]]:
        """``(meta, token_ids, values)`` per row as Python objects (``token_ids`` is ``()`` without ids)."""
        lengths = self.lengths.tolist()
        values = _split(self.values, lengths)
        ids = _split(self.token_ids, lengths) if self.token_ids.numel() else [()] * len(lengths)
        return list(zip(self.meta.tolist(), ids, values))


def _flat(rows, typecode: str, dtype: torch.dtype) -> torch.Tensor:
    """Rows of Python numbers back to back in one tensor (through ``array``: ~2x faster than ``torch.tensor``)."""
    itemsize = array.array(typecode).itemsize
    if itemsize != dtype.itemsize:
        raise RuntimeError(f"C type {typecode!r} is {itemsize} bytes on this platform, {dtype} needs {dtype.itemsize}")
    data = array.array(typecode, chain.from_iterable(rows))
    return torch.frombuffer(data, dtype=dtype) if len(data) else torch.empty(0, dtype=dtype)


def _split(flat: torch.Tensor, lengths: list[int]) -> list[tuple]:
    array_view, out, start = flat.numpy(), [], 0
    for n in lengths:
        out.append(tuple(array_view[start:start + n].tolist()))
        start += n
    return out


def gather_from_engines(local: RaggedRows, *, engine_index: int, engine_ranks: Sequence[Sequence[int]],
                        group: dist.ProcessGroup | None = None) -> list[RaggedRows]:
    """Every engine's rows on every rank (collective over ``group``, which spans all of ``engine_ranks``).

    ``engine_ranks[e]`` are the global ranks of engine ``e``; its first rank sends. Raises
    :class:`RolloutDivergenceError` on every rank if the ranks of an engine hold different rows."""
    buf = local.to_bytes()
    digest = hashlib.sha256(buf.numpy().data).digest()
    header = torch.tensor([engine_index, buf.numel(), *(int.from_bytes(digest[i:i + 7], "little")
                                                         for i in range(0, 28, 7))], dtype=torch.int64)
    headers = [torch.empty_like(header) for _ in range(dist.get_world_size(group))]
    dist.all_gather(headers, header, group=group)
    by_engine: dict[int, set[tuple[int, ...]]] = {}
    for h in headers:
        engine, *rest = h.tolist()
        by_engine.setdefault(engine, set()).add(tuple(rest))
    split = sorted(e for e, seen in by_engine.items() if len(seen) > 1)
    if split:
        raise RolloutDivergenceError(f"the ranks of rollout engine(s) {split} produced different outputs (their "
                                     "requests, seeds or weights differ)")
    rank = dist.get_rank()
    gathered = []
    for engine, ranks in enumerate(engine_ranks):
        nbytes = next(iter(by_engine[engine]))[0]
        own = rank in ranks  # this engine's rows are already here (the digests matched): receive into a copy
        data = buf if own else torch.empty(nbytes, dtype=torch.uint8)
        dist.broadcast(data, src=ranks[0], group=group)
        gathered.append(local if own else RaggedRows.from_bytes(data))
    return gathered
