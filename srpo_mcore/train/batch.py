"""From scored rollouts to the trainer's micro-batches.

Every rank holds the whole rollout batch (token ids and log-probs as tensor views into the engines' packed
buffers, ~8 bytes a token, plus a few floats per sample). Each data-parallel
rank takes its share through :func:`plan_micro_batches` (balanced by tokens, packed under the token budget,
the same number of micro-batches on every rank) and lays each micro-batch out right-padded as ``[b, s]``:

    input_ids[i]  = (prompt + response)[:-1]
    targets[i]    = (prompt + response)[1:]
    loss_mask[i]  = 1 where the target is a response token (0 on prompt and padding)

plus per-token advantages and log-probs aligned with ``targets``, all on the model's device (laid out on the CPU, then
moved in one go by :meth:`MicroBatch.to`). Under pipeline parallelism all micro-batches
of a rank share one ``[b, s]`` shape (the pipeline's p2p buffers are sized from it).
"""

from __future__ import annotations

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
    """Lay out each index list as a right-padded micro-batch on ``device`` (the model's, ``ParallelState.device``).

    ``extras`` of each micro-batch: ``targets`` (long), ``loss_mask``, ``advantages``, ``rollout_logprobs`` and any
    ``per_token`` arrays (e.g. ``old_logprobs``; one list per sample, aligned with its response tokens) as float
    ``[b, s]`` tensors, plus ``sample_index`` ``[b]`` (-1 for a dummy row). An empty index list becomes one dummy
    row of padding with zero loss weight, so every rank runs the same number of micro-batches."""
    per_token = per_token or {}
    widths = [round_up(max((samples[i].length - 1 for i in idx), default=1), seq_multiple) for idx in index_lists]
    rows = [max(len(idx), 1) for idx in index_lists]
    if uniform_shape:
        widths = [max(widths)] * len(widths)
        rows = [max(rows)] * len(rows)
    batches = []
    for idx, b, s in zip(index_lists, rows, widths):
        input_ids = torch.full((b, s), pad_id, dtype=torch.long)
        targets = torch.full((b, s), pad_id, dtype=torch.long)
        floats = {name: torch.zeros((b, s), dtype=torch.float32)
                  for name in ("loss_mask", "advantages", "rollout_logprobs", *per_token)}
        sample_index = torch.full((b,), -1, dtype=torch.long)
        for row, i in enumerate(idx):
            sample = samples[i]
            seq = torch.cat([torch.as_tensor(sample.prompt_ids, dtype=torch.long),
                             torch.as_tensor(sample.response_ids, dtype=torch.long)])
            n = seq.numel() - 1
            input_ids[row, :n] = seq[:-1]
            targets[row, :n] = seq[1:]
            start, end = len(sample.prompt_ids) - 1, n  # positions whose target is a response token
            floats["loss_mask"][row, start:end] = 1.0
            floats["advantages"][row, start:end] = sample.advantage
            floats["rollout_logprobs"][row, start:end] = torch.as_tensor(sample.rollout_logprobs,
                                                                         dtype=torch.float32)
            for name, values in per_token.items():
                floats[name][row, start:end] = torch.tensor(values[i], dtype=torch.float32)
            sample_index[row] = i
        batches.append(MicroBatch(input_ids, {"targets": targets, "sample_index": sample_index, **floats}).to(device))
    return batches
