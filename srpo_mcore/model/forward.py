"""Running the (possibly pipelined) Megatron model over micro-batches.

``forward_backward`` wraps Megatron's schedule (no pipelining, or 1F1B when PP > 1) for ``[batch, seq]`` token
micro-batches, packed rows or right-padded ones (:class:`MicroBatch`): the first stage embeds tokens, the last stage hands ``loss_fn`` either its
vocab-parallel logits ``[batch, seq, padded_vocab / TP]`` (``head="logits"``) or, for a fused LM head, an
:class:`LMHeadInput`: the final hidden states and this rank's vocab shard of the output weight, with Megatron's
output layer left out (``head="hidden"``). Causal attention makes right padding harmless to the real tokens, and a
packed row's tail padding is a sequence of its own; the loss masks the padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


def segment_positions(cu_seqlens: torch.Tensor, total: int, device: torch.device | str) -> torch.Tensor:
    """``[total]`` positions of a packed row's tokens in their own samples: ``0 .. n-1`` in every segment
    ``[cu_seqlens[i], cu_seqlens[i+1])`` (``cu_seqlens[-1] == total``)."""
    starts = cu_seqlens[:-1].long().to(device)
    lengths = cu_seqlens[1:].long().to(device) - starts
    return torch.arange(total, device=device) - torch.repeat_interleave(starts, lengths, output_size=total)

@dataclass
class MicroBatch:
    """Token ids ``[b, s]`` plus whatever the loss needs (kept on every stage, used on the last).

    Two shapes: ``cu_seqlens`` None, each row one sequence (right padding, plain causal attention); or a packed
    row (``b = 1``): several sequences end to end, ``cu_seqlens`` ``[n + 1]`` (int32) their boundaries, attention
    causal within each and nothing across, rotary positions restarting at each boundary (Megatron's THD format,
    :meth:`packed_seq_params`). The trainer's micro-batches are packed (train/batch.py)."""

    input_ids: torch.Tensor
    extras: dict
    cu_seqlens: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        b, s = self.input_ids.shape
        return b, s

    @property
    def device(self) -> torch.device:
        return self.input_ids.device

    def to(self, device: torch.device | str) -> MicroBatch:
        """This micro-batch with its token ids, boundaries and every tensor in ``extras`` on ``device`` (the model's:
        the loss mixes them with the logits); other extras are shared. The one place micro-batches change device."""
        extras = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.extras.items()}
        cu = self.cu_seqlens.to(device) if self.cu_seqlens is not None else None
        return MicroBatch(self.input_ids.to(device), extras, cu)

    def position_ids(self) -> torch.Tensor:
        """``[b, s]`` positions: 0.. per row, or restarting at 0 at every packed boundary."""
        b, s = self.shape
        if self.cu_seqlens is None:
            return torch.arange(s, device=self.device).expand(b, s)
        return segment_positions(self.cu_seqlens, s, self.device).expand(b, s)

    def packed_seq_params(self):
        """Megatron's ``PackedSeqParams`` (THD) for a packed row, None for plain rows."""
        if self.cu_seqlens is None:
            return None
        from megatron.core.packed_seq_params import PackedSeqParams

        longest = int((self.cu_seqlens[1:] - self.cu_seqlens[:-1]).max())
        return PackedSeqParams(qkv_format="thd", cu_seqlens_q=self.cu_seqlens, cu_seqlens_kv=self.cu_seqlens,
                               max_seqlen_q=longest, max_seqlen_kv=longest)


def sequence_multiple(config) -> int:
    """What every micro-batch length must be a multiple of: the TP size under sequence parallelism (Megatron splits
    the sequence dimension over the TP ranks), else 1. ``config``: Megatron's ``TransformerConfig`` or our
    ``ParallelConfig`` (same field names). Transformer Engine adds nothing in bf16/fp32 (fp8, which needs multiples of
    16, is not offered)."""
    return config.tensor_model_parallel_size if config.sequence_parallel else 1


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass
class LMHeadInput:
    """What the last stage hands to a fused LM head instead of logits.

    ``hidden``: the final (normed) hidden states ``[s, b, h]``, sequence-major as Megatron keeps them (with
    sequence parallelism already gathered over TP). ``weight``: this rank's vocab shard ``[V/TP, h]`` of the
    output layer's weight, which is the word embedding's (``shared_embedding_or_output_weight()``) with tied
    embeddings; gradients reach it through the loss, and Megatron's DDP and tied-embedding all-reduce take them
    from there. ``reduce_grad_input``: whether the loss must all-reduce the hidden-state gradient over TP
    itself (False when the sequence-parallel gather's reduce-scatter already sums it); pass it on to
    ``srpo_kernels`` ``fused_linear_logprobs``.
    """

    hidden: torch.Tensor
    weight: torch.Tensor
    reduce_grad_input: bool


HeadOutput = torch.Tensor | LMHeadInput
LossFn = Callable[[HeadOutput, MicroBatch], tuple[torch.Tensor, torch.Tensor, dict]]
"""(logits shard [b, s, V/TP] or LMHeadInput, micro-batch) -> (loss summed over tokens, token count, metrics)."""
HEADS = ("logits", "hidden")


def lm_head_input(*, hidden_states: torch.Tensor, output_layer, output_weight, **_) -> LMHeadInput:
    """Megatron ``GPTModel`` ``output_processor``: skip the output layer, return its input and weight."""
    from megatron.core.tensor_parallel import gather_from_sequence_parallel_region

    weight = output_layer.weight if output_weight is None else output_weight
    if getattr(output_layer, "sequence_parallel", False):
        # Megatron's ColumnParallelLinear gathers the sequence shards the same way; the backward
        # reduce-scatter then sums the TP ranks' partial hidden-state gradients.
        hidden = gather_from_sequence_parallel_region(hidden_states, tensor_parallel_output_grad=True,
                                                      group=output_layer.tp_group)
        return LMHeadInput(hidden, weight, reduce_grad_input=False)
    return LMHeadInput(hidden_states, weight, reduce_grad_input=True)


def forward_backward(model_chunk: torch.nn.Module, micro_batches: Sequence[MicroBatch], loss_fn: LossFn, *,
                     forward_only: bool, head: str = "logits") -> list[dict]:
    """Run the schedule over ``micro_batches``; return the per-micro-batch metric dicts (last stage only).

    ``head``: what ``loss_fn`` receives on the last stage (see the module docstring). All micro-batches must share
    one ``[b, s]`` shape under PP (pipeline buffers are sized from it), lie on the model's device
    (:meth:`MicroBatch.to`) and, under sequence parallelism, have lengths that are multiples of
    :func:`sequence_multiple`."""
    from megatron.core.pipeline_parallel import get_forward_backward_func

    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    head_kwargs = {"output_processor": lm_head_input} if head == "hidden" else {}
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
        output = model(input_ids=mb.input_ids, position_ids=mb.position_ids(), attention_mask=None,
                       packed_seq_params=mb.packed_seq_params(), **head_kwargs)

        def loss_func(head_output):
            return loss_fn(head_output, mb)

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
