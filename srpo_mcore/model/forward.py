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

    @property
    def device(self) -> torch.device:
        return self.input_ids.device

    def to(self, device: torch.device) -> MicroBatch:
        """This micro-batch with its token ids and every tensor in ``extras`` on ``device`` (the model's: the
        loss mixes them with the logits); other extras are shared. The one place micro-batches change device."""
        extras = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.extras.items()}
        return MicroBatch(self.input_ids.to(device), extras)


def sequence_multiple(config) -> int:
    """What every micro-batch length must be a multiple of: the TP size under sequence parallelism (Megatron splits
    the sequence dimension over the TP ranks), else 1. ``config``: Megatron's ``TransformerConfig`` or our
    ``ParallelConfig`` (same field names). Transformer Engine adds nothing in bf16/fp32 (fp8, which needs multiples of
    16, is not offered)."""
    return config.tensor_model_parallel_size if config.sequence_parallel else 1


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


LossFn = Callable[[torch.Tensor, MicroBatch], tuple[torch.Tensor, torch.Tensor, dict]]
"""(logits shard [b, s, V/TP], micro-batch) -> (loss summed over tokens, token count, metrics)."""


def forward_backward(model_chunk: torch.nn.Module, micro_batches: Sequence[MicroBatch], loss_fn: LossFn, *,
                     forward_only: bool) -> list[dict]:
    """Run the schedule over ``micro_batches``; return the per-micro-batch metric dicts (last stage only).

    All micro-batches must share one ``[b, s]`` shape under PP (pipeline buffers are sized from it), lie on the
    model's device (:meth:`MicroBatch.to`) and, under sequence parallelism, have lengths that are multiples of
    :func:`sequence_multiple`."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    device = next(model_chunk.parameters()).device
    for i, mb in enumerate(micro_batches):
        if mb.device != device:
            raise ValueError(f"micro-batch {i} is on {mb.device} but the model is on {device}: build it with "
                             "build_micro_batches(..., device=state.device) or move it with MicroBatch.to")
    multiple = sequence_multiple(model_chunk.config)
    shapes = {mb.shape for mb in micro_batches}
    if any(width % multiple for _, width in shapes):
        raise ValueError(f"micro-batch lengths {sorted(w for _, w in shapes)} must be multiples of {multiple} (sequence "
                         "parallelism splits the sequence over the TP ranks): pad them, e.g. "
                         "build_micro_batches(..., seq_multiple=sequence_multiple(cfg.parallel))")
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
