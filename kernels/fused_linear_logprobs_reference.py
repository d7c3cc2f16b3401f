"""PyTorch reference for :mod:`srpo_kernels.fused_linear_logprobs`: LM head + log-probs, the fp64 oracle and
the torch backend.

``logits = hidden @ weight.T`` in the inputs' dtype (this rank's vocab shard), then
:func:`~srpo_kernels.logprobs_reference.reference_logprobs`. When ``reduce_grad_input`` the hidden states
pass through :func:`~srpo_kernels._tp.copy_to_tp` first (identity forward, TP all-reduce of their gradient
backward), exactly like Megatron's ``ColumnParallelLinear`` does with ``copy_to_tensor_model_parallel_region``.
With ``chunk_size`` the tokens are processed in checkpointed chunks, so one ``[chunk, V/TP]`` logits block
lives at a time (the weight gradient then accumulates across chunks in the weight's dtype).
"""

from __future__ import annotations

import torch
from srpo_kernels._tp import ProcessGroup, copy_to_tp
from srpo_kernels.logprobs_reference import reference_logprobs
from torch.utils.checkpoint import checkpoint


def reference_fused_linear_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    vocab_size: int | None = None,
    temperature: float = 1.0,
    ignore_index: int = -100,
    compute_entropy: bool = False,
    tp_group: ProcessGroup | None = None,
    reduce_grad_input: bool = True,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token ``log p(target)`` (and entropy) of ``softmax(hidden @ weight.T / temperature)``.

    Args:
        hidden: ``[..., H]`` hidden states, replicated on every TP rank.
        weight: ``[V/TP, H]`` this rank's shard of the output-layer weight.
        targets: ``[...]`` global target ids.
        reduce_grad_input: all-reduce the gradient of ``hidden`` over ``tp_group`` (see
            :func:`srpo_kernels.fused_linear_logprobs.fused_linear_logprobs` for how to choose).
        Others: as :func:`~srpo_kernels.logprobs_reference.reference_logprobs`.
    """
    _check_linear_inputs(hidden, weight, targets)
    if reduce_grad_input:
        hidden = copy_to_tp(hidden, tp_group)
    flat_hidden, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    kwargs = dict(vocab_size=vocab_size, temperature=temperature, ignore_index=ignore_index,
                  compute_entropy=compute_entropy, tp_group=tp_group)

    def chunk_fn(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor):
        return reference_logprobs(h @ w.T, t, **kwargs)

    if chunk_size is None or chunk_size >= flat_targets.numel():
        logp, entropy = chunk_fn(flat_hidden, weight, flat_targets)
    else:
        use_checkpoint = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
        parts = [
            checkpoint(chunk_fn, h, weight, t, use_reentrant=False) if use_checkpoint else chunk_fn(h, weight, t)
            for h, t in zip(flat_hidden.split(chunk_size), flat_targets.split(chunk_size))
        ]
        logp = torch.cat([p[0] for p in parts])
        entropy = torch.cat([p[1] for p in parts]) if compute_entropy else None
    return logp.view(targets.shape), (entropy.view(targets.shape) if entropy is not None else None)


def _check_linear_inputs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> None:
    if weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"weight {tuple(weight.shape)} must be [V/TP, H] with H = hidden's last dim {hidden.shape[-1]}"
        )
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} must be targets {tuple(targets.shape)} plus [H]")
    if hidden.dtype != weight.dtype:
        raise TypeError(f"hidden ({hidden.dtype}) and weight ({weight.dtype}) must have the same dtype")
