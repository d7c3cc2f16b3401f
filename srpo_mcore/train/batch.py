"""From scored rollouts to the trainer's micro-batches: packed rows, no padding between samples.

Every rank holds the whole rollout batch (token ids and log-probs as tensor views into the engines' packed
buffers, ~8 bytes a token, plus a few floats per sample). Each data-parallel rank takes its share through
:func:`plan_micro_batches` (balanced by tokens, packed under ``train.max_tokens_per_micro_batch``, the same number
of micro-batches on every rank) and lays each micro-batch out as ONE row ``[1, T]``: its samples end to end,

    input_ids  = sample_0[:-1] | sample_1[:-1] | ... | padding
    targets    = sample_0[1:]  | sample_1[1:]  | ... | padding
    cu_seqlens = [0, len_0, len_0 + len_1, ..., T]     (the tail padding, if any, is a segment of its own)
    loss_mask  = 1 where the target is a response token (0 on prompts and padding)

plus per-token advantages and log-probs aligned with ``targets`` and ``seq_ids`` (each token's sample within the
row, for the sequence-mean loss modes). Attention stays inside each sample and rotary positions restart at each
boundary (Megatron's THD format; :class:`~srpo_mcore.model.forward.MicroBatch`), so a sample's tokens see exactly
what they would alone. Padding is only at the tail: to a multiple of TP under sequence parallelism, and under
pipeline parallelism to the rank's longest row (the pipeline's p2p buffers are sized from one shape). Everything
is laid out on the CPU, then moved to the model's device in one go by :meth:`MicroBatch.to`.
"""

from __future__ import annotations

import itertools

import torch

from srpo_mcore.model.forward import MicroBatch, round_up
from srpo_mcore.tasks.scoring import ScoredSample
from srpo_mcore.train.packing import plan_micro_batches


def plan_rank_micro_batches(samples: list[ScoredSample], *, dp_rank: int, dp_size: int, token_budget: int
                            ) -> list[list[int]]:
    """Indices into ``samples`` for each of this DP rank's micro-batches (possibly empty lists)."""
    lengths = [max(s.length - 1, 1) for s in samples]
    plan = plan_micro_batches(lengths, num_ranks=dp_size, token_budget=token_budget)
    return [batch.tolist() for batch in plan.rank_micro_batches(dp_rank)]


def build_micro_batches(samples: list[ScoredSample], index_lists: list[list[int]], *, pad_id: int,
                        per_token: dict[str, list[list[float]]] | None = None, uniform_shape: bool,
                        device: torch.device | str = "cpu", seq_multiple: int = 1) -> list[MicroBatch]:
    """Lay out each index list as one packed row on ``device`` (the model's, ``ParallelState.device``).

    ``extras`` of each micro-batch, all ``[1, T]``: ``targets`` (long), ``seq_ids`` (long), ``loss_mask``,
    ``advantages``, ``rollout_logprobs`` and any ``per_token`` arrays (e.g. ``old_logprobs``; one list per sample,
    aligned with its response tokens) as float; plus ``sample_index`` ``[n]`` (the row's samples, in order) and
    ``num_sequences`` (how many of them have response tokens: the count of the sequence-mean loss modes) and
    ``num_tokens`` (the row's tokens before the tail padding). ``T`` is
    the row's length rounded up to ``seq_multiple``, or with ``uniform_shape`` the longest row's. An empty index
    list becomes a row of padding with zero loss weight, so every rank runs the same number of micro-batches."""
    per_token = per_token or {}
    lengths = [[samples[i].length - 1 for i in idx] for idx in index_lists]
    widths = [round_up(max(sum(n), 1), seq_multiple) for n in lengths]
    if uniform_shape:
        widths = [max(widths)] * len(widths)
    return [_packed_row(samples, idx, n, width, pad_id, per_token).to(device)
            for idx, n, width in zip(index_lists, lengths, widths)]


def _packed_row(samples: list[ScoredSample], idx: list[int], lengths: list[int], width: int, pad_id: int,
                per_token: dict[str, list[list[float]]]) -> MicroBatch:
    input_ids = torch.full((1, width), pad_id, dtype=torch.long)
    targets = torch.full((1, width), pad_id, dtype=torch.long)
    floats = {name: torch.zeros((1, width), dtype=torch.float32)
              for name in ("loss_mask", "advantages", "rollout_logprobs", *per_token)}
    seq_ids = torch.full((1, width), len(idx), dtype=torch.long)  # the tail padding: one more segment
    offset, num_sequences = 0, 0
    for segment, (i, n) in enumerate(zip(idx, lengths)):
        sample = samples[i]
        seq = torch.cat([torch.as_tensor(sample.prompt_ids, dtype=torch.long),
                         torch.as_tensor(sample.response_ids, dtype=torch.long)])
        input_ids[0, offset:offset + n] = seq[:-1]
        targets[0, offset:offset + n] = seq[1:]
        seq_ids[0, offset:offset + n] = segment
        start, end = offset + len(sample.prompt_ids) - 1, offset + n  # positions whose target is a response token
        floats["loss_mask"][0, start:end] = 1.0
        floats["advantages"][0, start:end] = sample.advantage
        floats["rollout_logprobs"][0, start:end] = torch.as_tensor(sample.rollout_logprobs, dtype=torch.float32)
        for name, values in per_token.items():
            floats[name][0, start:end] = torch.tensor(values[i], dtype=torch.float32)
        num_sequences += int(end > start)
        offset += n
    boundaries = [0, *itertools.accumulate(lengths)]
    if boundaries[-1] < width:
        boundaries.append(width)
    extras = {"targets": targets, "seq_ids": seq_ids, **floats, "sample_index": torch.tensor(idx, dtype=torch.long),
              "num_sequences": torch.tensor(num_sequences, dtype=torch.int),
              "num_tokens": torch.tensor(offset, dtype=torch.int)}
    return MicroBatch(input_ids, extras, cu_seqlens=torch.tensor(boundaries, dtype=torch.int32))


def padding_fraction(micro_batches: list[MicroBatch]) -> tuple[int, int]:
    """``(padded, processed)`` token counts of these packed rows (``train/padding_fraction`` = padded / processed
    over the step)."""
    processed = sum(mb.input_ids.numel() for mb in micro_batches)
    real = sum(int(mb.extras["num_tokens"]) for mb in micro_batches)
    return processed - real, processed
