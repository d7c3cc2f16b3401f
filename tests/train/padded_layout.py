"""The reference layout the packed micro-batches are tested against: one sample per row, right-padded ``[b, s]``,
plain causal attention through Megatron's own core attention (no ``cu_seqlens``).

This is how the trainer laid out micro-batches before packing (train/batch.py); it stays here as the independent
reference of the packing parity test (tests/distributed/workers/qwen2_parity.py) and as the baseline of the layout
benchmark (benchmarks/micro_batch_layout.py)."""

from __future__ import annotations

import torch

from srpo_mcore.model.forward import MicroBatch, round_up
from srpo_mcore.tasks.scoring import ScoredSample


def build_padded_micro_batches(samples: list[ScoredSample], index_lists: list[list[int]], *, pad_id: int,
                               uniform_shape: bool, seq_multiple: int = 1) -> list[MicroBatch]:
    """Each index list as ``[len(idx), longest]`` rows (under ``uniform_shape``, every micro-batch at the most rows
    and the longest row of all), with the same ``extras`` as the packed builder's."""
    widths = [round_up(max((samples[i].length - 1 for i in idx), default=1), seq_multiple) for idx in index_lists]
    rows = [max(len(idx), 1) for idx in index_lists]
    if uniform_shape:
        widths, rows = [max(widths)] * len(widths), [max(rows)] * len(rows)
    batches = []
    for idx, b, s in zip(index_lists, rows, widths):
        input_ids = torch.full((b, s), pad_id, dtype=torch.long)
        targets = torch.full((b, s), pad_id, dtype=torch.long)
        floats = {name: torch.zeros((b, s)) for name in ("loss_mask", "advantages", "rollout_logprobs")}
        for row, i in enumerate(idx):
            sample = samples[i]
            seq = torch.cat([torch.as_tensor(sample.prompt_ids, dtype=torch.long),
                             torch.as_tensor(sample.response_ids, dtype=torch.long)])
            n = seq.numel() - 1
            input_ids[row, :n], targets[row, :n] = seq[:-1], seq[1:]
            start = len(sample.prompt_ids) - 1
            floats["loss_mask"][row, start:n] = 1.0
            floats["advantages"][row, start:n] = sample.advantage
            floats["rollout_logprobs"][row, start:n] = torch.as_tensor(sample.rollout_logprobs, dtype=torch.float32)
        num_sequences = int((floats["loss_mask"].sum(dim=1) > 0).sum())
        batches.append(MicroBatch(input_ids, {"targets": targets, **floats,
                                              "sample_index": torch.tensor(idx, dtype=torch.long),
                                              "num_sequences": torch.tensor(num_sequences, dtype=torch.int)}))
    return batches
