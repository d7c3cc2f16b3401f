"""Running the (possibly pipelined) Megatron model over micro-batches.

``forward_backward`` wraps Megatron's schedule (no pipelining, or 1F1B when PP > 1) for right-padded
``[batch, seq]`` token micro-batches: the first stage embeds tokens, the last stage hands its vocab-parallel
logits ``[batch, seq, padded_vocab / TP]`` to ``loss_fn``. Causal attention makes right padding harmless to
the real tokens; the loss masks the padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass
class MicroBatch:
    """Right-padded token ids ``[b, s]`` plus whatever the loss needs (kept on every stage, used on the last)."""

    input_ids: torch.Tensor
    extras: dict

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.input_ids.shape)


LossFn = Callable[[torch.Tensor, MicroBatch], tuple[torch.Tensor, torch.Tensor, dict]]
"""(logits shard [b, s, V/TP], micro-batch) -> (loss summed over tokens, token count, metrics)."""


def forward_backward(model_chunk: torch.nn.Module, micro_batches: Sequence[MicroBatch], loss_fn: LossFn, *,
                     forward_only: bool) -> list[dict]:
    """Run the schedule over ``micro_batches``; return the per-micro-batch metric dicts (last stage only).

    All micro-batches must share one ``[b, s]`` shape under PP (pipeline buffers are sized from it)."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    shapes = {mb.shape for mb in micro_batches}
    b, s = max(shapes)
    batches = iter(micro_batches)

    def forward_step(data_iterator, model):
        mb = next(data_iterator)
        position_ids = torch.arange(mb.input_ids.shape[1], device=mb.input_ids.device).expand_as(mb.input_ids)
        output = model(input_ids=mb.input_ids, position_ids=position_ids, attention_mask=None)

        def loss_func(logits):
            return loss_fn(logits, mb)

        return output, loss_func

    schedule = get_forward_backward_func()
    return schedule(
        forward_step_func=forward_step,
        data_iterator=batches,
        model=[model_chunk],
        num_microbatches=len(micro_batches),
        seq_length=s,
        micro_batch_size=b,
        forward_only=forward_only,
    )
