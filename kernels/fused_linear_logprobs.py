"""Fused LM head + vocab-parallel log-probs: never materialises the ``[N, V]`` logits.

Reference and specification: :mod:`srpo_kernels.fused_linear_logprobs_reference`.

The local vocab shard is processed in chunks of ``C`` columns (default: ~256 MiB of logits per chunk)::

    forward, per chunk c:   Z_c = H @ W_c^T                   (cuBLAS, fp32 accumulation, input dtype out)
                            partials[c] = online-softmax partials of Z_c   (Triton, logprobs.py)
    then:                   one all-gather of the [TP x chunks, 4, N] partials, one combine kernel
    backward, per chunk c:  Z_c = H @ W_c^T                   (recomputed: bit-identical to forward)
                            dZ_c written over Z_c in place    (Triton, logprobs.py)
                            dH  += dZ_c @ W_c                 (fp32 accumulator across chunks)
                            dW_c = dZ_c^T @ H                 (fp32 accumulation inside the GEMM)
    then:                   all-reduce of dH over TP (see below), cast to the hidden dtype

Chunk partials merge exactly like TP partials (log-sum-exp of log-sum-exps), so "online softmax over vocab
chunks" and "vocab-parallel softmax" are one code path. Padded vocab rows of the weight (global id
``>= vocab_size``) are skipped by the GEMMs and get a zero gradient. The GEMMs are plain ``torch.mm`` calls:
cuBLAS already runs them near peak; fusing the softmax into the GEMM epilogue would save the chunk's one
write and one read (~5% of the forward at the H100 target shape, see docs/kernels.md).

Memory (forward): one ``[N, C]`` logits chunk plus ``O(N * chunks)`` fp32 partials. Backward adds the
``[N, H]`` fp32 ``dH`` accumulator and the weight gradient itself.

**Tensor parallelism and Megatron.** In Megatron-Core the output layer is a ``ColumnParallelLinear``
(``gather_output=False``): it passes the replicated hidden states through
``copy_to_tensor_model_parallel_region`` (identity forward, all-reduce of the gradient backward) -- or, with
sequence parallelism, ``gather_from_sequence_parallel_region`` (all-gather forward, reduce-scatter backward) --
then multiplies by its vocab shard of the weight. Each rank's ``dH = dZ_local @ W_local`` is only the partial
sum over its shard; the true ``dH`` is the sum over TP ranks. This op replaces that linear and the loss, so
exactly one of the two must do the reduction:

* ``reduce_grad_input=True`` (default): pass the replicated hidden states *as they are* (not through
  ``copy_to_tensor_model_parallel_region``); the op all-reduces the fp32 ``dH`` over ``tp_group``.
* ``reduce_grad_input=False``: the caller already routed the hidden states through Megatron's mapping
  (``copy_to_tensor_model_parallel_region``, or ``gather_from_sequence_parallel_region`` under sequence
  parallelism, whose reduce-scatter then sums the partials); the op returns its partial ``dH``.

Doing both multiplies the hidden-state gradient by the TP size.
"""

from __future__ import annotations

import functools

import torch
from srpo_kernels._tp import ProcessGroup, VocabShard, all_gather_stacked, all_reduce_
from srpo_kernels.fused_linear_logprobs_reference import _check_linear_inputs
from srpo_kernels.logprobs import (
    _N_STATS,
    _NEG_BIG,
    _partials_kernel,
    combine_partials,
    logprob_grad,
    logprob_partials,
)
from srpo_kernels.logprobs_reference import _check_inputs
from srpo_kernels.triton_utils import check_triton_device, row_major

_CHUNK_BYTES = 256 * 2**20  # default size of one [N, C] logits chunk


def _chunk_width(n_tokens: int, shard_size: int, element_size: int, requested: int | None) -> int:
    """Columns per vocab chunk: ``requested``, else ~_CHUNK_BYTES of logits rounded to 256 columns."""
    if requested is not None:
        if requested <= 0:
            raise ValueError(f"vocab_chunk_size must be positive, got {requested}")
        return min(requested, shard_size)
    width = _CHUNK_BYTES // max(1, n_tokens * element_size)
    return min(max(256, width // 256 * 256), shard_size)


def _chunks(shard: VocabShard, width: int) -> list[tuple[int, int]]:
    """``(first local column, number of real-vocab columns)`` per chunk. The chunk count depends only on the
    shard width, so it is the same on every TP rank (the partials are gathered as one tensor)."""
    return [(c0, max(0, min(width, shard.n_valid - c0))) for c0 in range(0, shard.shard_size, width)]


@functools.cache
def _fp32_out_gemm_supported(device_type: str, dtype: torch.dtype) -> bool:
    """Whether ``torch.addmm(..., out_dtype=torch.float32)`` runs for ``dtype`` inputs on this device."""
    try:
        a = torch.ones((2, 2), dtype=dtype, device=device_type)
        acc = torch.ones((2, 2), dtype=torch.float32, device=device_type)
        torch.addmm(acc, a, a, out_dtype=torch.float32, out=acc)
        return bool((acc == 3.0).all())  # accumulated in place: 1 + (1*1 + 1*1)
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def _addmm_fp32_(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``acc += a @ b`` with ``acc`` fp32; no rounding of the product to ``a``'s dtype where supported."""
    if a.dtype == torch.float32:
        acc.addmm_(a, b)
    elif _fp32_out_gemm_supported(a.device.type, a.dtype):
        torch.addmm(acc, a, b, out_dtype=torch.float32, out=acc)
    else:  # fallback: each chunk's product is rounded once to the input dtype before the fp32 sum
        acc.add_(a @ b)


class _FusedLinearLogprobsFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, shard, group, inv_temp, ignore_index, compute_entropy,
                reduce_grad_input, chunk_width, block_v):
        chunks = _chunks(shard, chunk_width)
        n_tokens = targets.numel()
        partials = torch.empty((len(chunks), _N_STATS, n_tokens), dtype=torch.float32, device=hidden.device)
        for k, (c0, width) in enumerate(chunks):
            if width == 0:  # all padding: an empty partial
                partials[k, 0].fill_(_NEG_BIG)
                partials[k, 1:].zero_()
                continue
            logits = hidden @ weight[c0 : c0 + width].T
            logprob_partials(
                logits, targets, col_start=shard.col_start + c0, n_valid=width, inv_temp=inv_temp,
                ignore_index=ignore_index, compute_entropy=compute_entropy, out=partials[k], block_v=block_v,
            )
        lse, logp, ent = combine_partials(
            all_gather_stacked(partials, group).flatten(0, 1), targets,
            vocab_size=shard.vocab_size, ignore_index=ignore_index, compute_entropy=compute_entropy,
        )
        ctx.save_for_backward(hidden, weight, targets, lse, ent)
        ctx.config = (shard, group, inv_temp, ignore_index, reduce_grad_input, chunks, block_v)
        ctx.set_materialize_grads(False)
        return (logp, ent) if compute_entropy else logp

    @staticmethod
    def backward(ctx, g_logp, g_ent=None):
        hidden, weight, targets, lse, ent = ctx.saved_tensors
        shard, group, inv_temp, ignore_index, reduce_grad_input, chunks, block_v = ctx.config
        need_dh, need_dw = ctx.needs_input_grad[:2]
        g_logp = torch.zeros_like(lse) if g_logp is None else g_logp.float().contiguous()
        g_ent = None if g_ent is None else g_ent.float().contiguous()
        dh = torch.zeros((hidden.shape[0], hidden.shape[1]), dtype=torch.float32, device=hidden.device)
        dw = torch.zeros_like(weight) if need_dw else None  # padded rows keep a zero gradient
        for c0, width in chunks:
            if width == 0:
                continue
            w_chunk = weight[c0 : c0 + width]
            dz = hidden @ w_chunk.T  # recomputed logits, overwritten by their gradient
            logprob_grad(
                dz, targets, lse, ent, g_logp, g_ent, col_start=shard.col_start + c0, n_valid=width,
                inv_temp=inv_temp, ignore_index=ignore_index, out=dz, block_v=block_v,
            )
            if need_dh:
                _addmm_fp32_(dh, dz, w_chunk)
            if need_dw:
                torch.mm(dz.T, hidden, out=dw[c0 : c0 + width])
        grad_hidden = None
        if need_dh:
            if reduce_grad_input:
                all_reduce_(dh, group)
            grad_hidden = dh.to(hidden.dtype)
        return grad_hidden, dw, None, None, None, None, None, None, None, None, None


def fused_linear_logprobs(
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
    vocab_chunk_size: int | None = None,
    block_v: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token ``log p(target)`` (and entropy) of ``softmax(hidden @ weight.T / temperature)``, vocab-parallel.

    Same contract as :func:`srpo_kernels.fused_linear_logprobs_reference.reference_fused_linear_logprobs`;
    outputs are float32, differentiable w.r.t. ``hidden`` and ``weight`` (gradients in their dtype).
    ``reduce_grad_input``: see the module docstring. ``vocab_chunk_size``: columns of the local shard per
    chunk (default: ~256 MiB of logits). ``block_v``: vocab tile width of the Triton kernels.
    """
    _check_linear_inputs(hidden, weight, targets)
    _check_inputs(hidden, targets, temperature, name="hidden")
    check_triton_device(hidden, _partials_kernel)
    shard = VocabShard.of(weight.shape[0], tp_group, vocab_size)
    flat_hidden = row_major(hidden.reshape(-1, hidden.shape[-1]))
    flat_targets = targets.reshape(-1).contiguous()
    width = _chunk_width(flat_targets.numel(), shard.shard_size, hidden.element_size(), vocab_chunk_size)
    out = _FusedLinearLogprobsFunction.apply(
        flat_hidden, row_major(weight), flat_targets, shard, tp_group, 1.0 / float(temperature),
        int(ignore_index), bool(compute_entropy), bool(reduce_grad_input), width, block_v,
    )
    logp, ent = out if compute_entropy else (out, None)
    return logp.view(targets.shape), (ent.view(targets.shape) if ent is not None else None)
