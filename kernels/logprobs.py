"""Vocab-parallel log-probs (and entropy) from a logits shard: Triton kernels and their autograd function.

Reference and specification: :func:`srpo_kernels.logprobs_reference.reference_logprobs`.

Algorithm (one program per token row, the row streamed in ``BLOCK_V`` tiles upcast to fp32):

* forward, one read of the logits: an online softmax gives per-row partial statistics of this shard
  ``(m, s, w, t)`` = (running max, ``sum exp(z - m)``, ``sum exp(z - m) * (z - m)``, target logit or 0).
  The partials of all TP ranks (and, for the fused LM head, of all vocab chunks) are gathered in one
  collective and merged by :func:`combine_partials` into ``lse``, ``logp`` and ``entropy``::

      M = max_r m_r,  S = sum_r s_r e^(m_r - M),  W = sum_r e^(m_r - M) (w_r + (m_r - M) s_r)
      lse = M + log S,   entropy = log S - W / S,   logp = sum_r t_r - lse

  Every term of ``W`` is <= 0, so the entropy is a sum of two non-negative numbers: no cancellation, unlike
  the textbook ``lse - sum p z`` when the entropy is small.
* backward, one read and one write: the softmax is recomputed from the saved ``lse`` (and entropy)::

      dz_j = g_logp (1[j = y] - p_j) - g_ent p_j (log p_j + entropy),   dlogits = dz / temperature

  written in the logits' dtype (optionally in place, which the fused LM head uses). Rows whose incoming
  gradients are both zero, and ignored rows, are written as zeros without reading the logits.

Padded vocab columns (global id >= ``vocab_size``) are never read: their probability and gradient are zero.
No ``[N, V]`` float32 buffer exists; the only extra memory is ``O(N)``.

Under ``TRITON_INTERPRET=1`` (CPU) the kernels run in Triton's interpreter; there, test in fp32/fp16 only
(the interpreter cannot do bf16 arithmetic).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from srpo_kernels._tp import ProcessGroup, VocabShard, all_gather_stacked
from srpo_kernels.logprobs_reference import _check_inputs
from srpo_kernels.triton_utils import check_triton_device, interpreted, row_major

# A finite "-inf" for running maxima: an empty shard's partial (max = -1e30, sum = 0) merges to an exact
# zero contribution, where -inf would give (-inf) * 0 = nan.
_NEG_BIG = -1.0e30
_N_STATS = 4  # rows of a partial: running max, sum of exp, entropy accumulator, target logit


def _vocab_launch(n_cols: int, block_v: int | None) -> tuple[int, int]:
    """(BLOCK_V, num_warps) for the row kernels. On H100 a 4096-wide bf16 tile is 8 KiB per step per row."""
    if block_v is None:
        block_v = min(1024 if interpreted(_partials_kernel) else 4096, triton.next_power_of_2(max(n_cols, 16)))
    return block_v, (8 if block_v >= 2048 else 4)


@triton.jit
def _partials_kernel(
    logits_ptr, logits_row_stride, targets_ptr, partials_ptr, n_rows,
    col_start, n_valid, inv_temp, ignore_index,
    COMPUTE_ENTROPY: tl.constexpr, BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0)
    target = tl.load(targets_ptr + row).to(tl.int64)
    row_ptr = logits_ptr + row.to(tl.int64) * logits_row_stride
    offs = tl.arange(0, BLOCK_V)

    m = tl.full((), -1.0e30, tl.float32)
    s = tl.zeros((), tl.float32)
    w = tl.zeros((), tl.float32)
    t_logit = tl.zeros((), tl.float32)
    if target != ignore_index:
        for start in tl.range(0, n_valid, BLOCK_V):
            cols = start + offs
            z = tl.load(row_ptr + cols, mask=cols < n_valid, other=float("-inf")).to(tl.float32) * inv_temp
            m_new = tl.maximum(m, tl.max(z, axis=0))
            alpha = tl.exp(m - m_new)
            u = z - m_new
            e = tl.exp(u)  # 0 on masked lanes
            if COMPUTE_ENTROPY:
                # rescale the old accumulator to the new max; every term stays <= 0
                w = alpha * (w + (m - m_new) * s) + tl.sum(e * tl.where(e > 0, u, 0.0), axis=0)
            s = s * alpha + tl.sum(e, axis=0)
            m = m_new
        local = target - col_start
        hit = (local >= 0) & (local < n_valid)
        x = tl.load(row_ptr + local, mask=hit, other=0.0).to(tl.float32)
        t_logit = tl.where(hit, x * inv_temp, 0.0)
    tl.store(partials_ptr + row, m)
    tl.store(partials_ptr + n_rows + row, s)
    tl.store(partials_ptr + 2 * n_rows + row, w)
    tl.store(partials_ptr + 3 * n_rows + row, t_logit)


@triton.jit
def _combine_kernel(
    partials_ptr, n_parts, targets_ptr, lse_ptr, logp_ptr, ent_ptr, n_rows,
    vocab_size, ignore_index,
    COMPUTE_ENTROPY: tl.constexpr, BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    in_range = rows < n_rows
    part_stride = 4 * n_rows

    big_m = tl.full((BLOCK_N,), -1.0e30, tl.float32)
    for p in range(0, n_parts):
        big_m = tl.maximum(big_m, tl.load(partials_ptr + p * part_stride + rows, mask=in_range, other=0.0))
    big_s = tl.zeros((BLOCK_N,), tl.float32)
    big_w = tl.zeros((BLOCK_N,), tl.float32)
    t_logit = tl.zeros((BLOCK_N,), tl.float32)
    for p in range(0, n_parts):
        base = partials_ptr + p * part_stride + rows
        m = tl.load(base, mask=in_range, other=0.0)
        s = tl.load(base + n_rows, mask=in_range, other=0.0)
        scale = tl.exp(m - big_m)
        big_s += scale * s
        if COMPUTE_ENTROPY:
            w = tl.load(base + 2 * n_rows, mask=in_range, other=0.0)
            big_w += scale * (w + (m - big_m) * s)
        t_logit += tl.load(base + 3 * n_rows, mask=in_range, other=0.0)

    target = tl.load(targets_ptr + rows, mask=in_range, other=0).to(tl.int64)
    ignored = target == ignore_index
    is_real = (target >= 0) & (target < vocab_size)
    big_s = tl.where(big_s > 0, big_s, 1.0)  # only ignored rows have no mass; keep them finite
    log_s = tl.log(big_s)
    lse = big_m + log_s
    logp = tl.where(is_real, t_logit - lse, float("-inf"))
    tl.store(lse_ptr + rows, tl.where(ignored, 0.0, lse), mask=in_range)
    tl.store(logp_ptr + rows, tl.where(ignored, 0.0, logp), mask=in_range)
    if COMPUTE_ENTROPY:
        tl.store(ent_ptr + rows, tl.where(ignored, 0.0, log_s - big_w / big_s), mask=in_range)


@triton.jit
def _grad_kernel(
    logits_ptr, logits_row_stride, grad_ptr, grad_row_stride, targets_ptr,
    lse_ptr, ent_ptr, g_logp_ptr, g_ent_ptr,
    n_cols, col_start, n_valid, inv_temp, ignore_index,
    HAS_ENT_GRAD: tl.constexpr, BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0)
    target = tl.load(targets_ptr + row).to(tl.int64)
    row_ptr = logits_ptr + row.to(tl.int64) * logits_row_stride
    grad_row_ptr = grad_ptr + row.to(tl.int64) * grad_row_stride
    offs = tl.arange(0, BLOCK_V)

    g_logp = tl.load(g_logp_ptr + row)
    g_ent = tl.zeros((), tl.float32)
    if HAS_ENT_GRAD:
        g_ent = tl.load(g_ent_ptr + row)
    if (target == ignore_index) | ((g_logp == 0.0) & (g_ent == 0.0)):
        for start in tl.range(0, n_cols, BLOCK_V):
            cols = start + offs
            tl.store(grad_row_ptr + cols, tl.zeros((BLOCK_V,), tl.float32), mask=cols < n_cols)
    else:
        lse = tl.load(lse_ptr + row)
        ent = tl.zeros((), tl.float32)
        if HAS_ENT_GRAD:
            ent = tl.load(ent_ptr + row)
        local = target - col_start
        hot = tl.where((local >= 0) & (local < n_valid), local, -1)  # one-hot column, -1 if not here
        for start in tl.range(0, n_cols, BLOCK_V):
            cols = start + offs
            valid = cols < n_valid
            z = tl.load(row_ptr + cols, mask=valid, other=0.0).to(tl.float32) * inv_temp
            log_p = z - lse
            p = tl.where(valid, tl.exp(log_p), 0.0)
            dz = tl.where(cols == hot, g_logp, 0.0) - g_logp * p
            if HAS_ENT_GRAD:
                dz -= g_ent * p * tl.where(p > 0, log_p + ent, 0.0)
            tl.store(grad_row_ptr + cols, dz * inv_temp, mask=cols < n_cols)


def logprob_partials(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    col_start: int,
    n_valid: int,
    inv_temp: float,
    ignore_index: int,
    compute_entropy: bool,
    out: torch.Tensor | None = None,
    block_v: int | None = None,
) -> torch.Tensor:
    """Per-row softmax partials ``[4, N]`` (fp32) of a row-major ``[N, C]`` block of logits.

    The block's column 0 is global vocab id ``col_start``; only its first ``n_valid`` columns are read.
    ``out`` may be a ``[4, N]`` slice of a larger buffer (so that partials of many blocks can be gathered
    in one collective).
    """
    n_rows = targets.numel()
    if out is None:
        out = torch.empty((_N_STATS, n_rows), dtype=torch.float32, device=logits.device)
    if n_rows == 0:
        return out
    block, warps = _vocab_launch(n_valid, block_v)
    _partials_kernel[(n_rows,)](
        logits, logits.stride(0), targets, out, n_rows,
        col_start, n_valid, inv_temp, ignore_index,
        COMPUTE_ENTROPY=compute_entropy, BLOCK_V=block, num_warps=warps,
    )
    return out


def combine_partials(
    partials: torch.Tensor, targets: torch.Tensor, *, vocab_size: int, ignore_index: int, compute_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Merge ``[P, 4, N]`` partials (TP ranks x vocab chunks) into fp32 ``(lse, logp, entropy or None)``."""
    n_parts, _, n_rows = partials.shape
    lse, logp = (torch.empty(n_rows, dtype=torch.float32, device=partials.device) for _ in range(2))
    ent = torch.empty_like(lse) if compute_entropy else None
    if n_rows:
        block_n = min(1024, triton.next_power_of_2(n_rows))
        _combine_kernel[(triton.cdiv(n_rows, block_n),)](
            partials.contiguous(), n_parts, targets, lse, logp, lse if ent is None else ent, n_rows,
            vocab_size, ignore_index,
            COMPUTE_ENTROPY=compute_entropy, BLOCK_N=block_n, num_warps=4,
        )
    return lse, logp, ent


def logprob_grad(
    logits: torch.Tensor,
    targets: torch.Tensor,
    lse: torch.Tensor,
    entropy: torch.Tensor | None,
    g_logp: torch.Tensor,
    g_entropy: torch.Tensor | None,
    *,
    col_start: int,
    n_valid: int,
    inv_temp: float,
    ignore_index: int,
    out: torch.Tensor | None = None,
    block_v: int | None = None,
) -> torch.Tensor:
    """Gradient w.r.t. a row-major ``[N, C]`` logits block, in ``out`` (default: a new tensor like ``logits``).

    ``g_logp``/``g_entropy`` are fp32 ``[N]`` gradients of the per-token outputs (``g_entropy=None``: none).
    ``out`` may be ``logits`` itself (in-place: each element is read before it is overwritten).
    """
    n_rows, n_cols = logits.shape
    if out is None:
        out = torch.empty_like(logits)
    if n_rows == 0:
        return out
    has_ent = g_entropy is not None
    block, warps = _vocab_launch(n_cols, block_v)
    _grad_kernel[(n_rows,)](
        logits, logits.stride(0), out, out.stride(0), targets,
        lse, entropy if has_ent else lse, g_logp, g_entropy if has_ent else g_logp,
        n_cols, col_start, n_valid, inv_temp, ignore_index,
        HAS_ENT_GRAD=has_ent, BLOCK_V=block, num_warps=warps,
    )
    return out


def forward_stats(
    logits: torch.Tensor,
    targets: torch.Tensor,
    shard: VocabShard,
    group: ProcessGroup | None,
    *,
    inv_temp: float,
    ignore_index: int,
    compute_entropy: bool,
    block_v: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Forward of the whole vocab-parallel op on a 2-D shard: ``(lse, logp, entropy or None)``, all fp32."""
    partials = logprob_partials(
        logits, targets, col_start=shard.col_start, n_valid=shard.n_valid, inv_temp=inv_temp,
        ignore_index=ignore_index, compute_entropy=compute_entropy, block_v=block_v,
    )
    return combine_partials(
        all_gather_stacked(partials, group), targets,
        vocab_size=shard.vocab_size, ignore_index=ignore_index, compute_entropy=compute_entropy,
    )


class _LogprobsFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, shard, group, temperature, ignore_index, compute_entropy, block_v):
        inv_temp = 1.0 / temperature
        lse, logp, ent = forward_stats(
            logits, targets, shard, group,
            inv_temp=inv_temp, ignore_index=ignore_index, compute_entropy=compute_entropy, block_v=block_v,
        )
        ctx.save_for_backward(logits, targets, lse, ent)
        ctx.config = (shard, inv_temp, ignore_index, block_v)
        ctx.set_materialize_grads(False)
        return (logp, ent) if compute_entropy else logp

    @staticmethod
    def backward(ctx, g_logp, g_ent=None):
        logits, targets, lse, ent = ctx.saved_tensors
        shard, inv_temp, ignore_index, block_v = ctx.config
        if g_logp is None:
            g_logp = torch.zeros_like(lse)
        grad = logprob_grad(
            logits, targets, lse, ent, g_logp.float().contiguous(),
            None if g_ent is None else g_ent.float().contiguous(),
            col_start=shard.col_start, n_valid=shard.n_valid, inv_temp=inv_temp,
            ignore_index=ignore_index, block_v=block_v,
        )
        return grad, None, None, None, None, None, None, None


def logprobs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    vocab_size: int | None = None,
    temperature: float = 1.0,
    ignore_index: int = -100,
    compute_entropy: bool = False,
    tp_group: ProcessGroup | None = None,
    block_v: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token ``log p(target)`` and optionally the entropy, from this rank's vocab shard of the logits.

    Same contract as :func:`srpo_kernels.logprobs_reference.reference_logprobs` (see there for the
    arguments); outputs are float32. Differentiable w.r.t. ``logits`` through both outputs; the gradient has
    the logits' dtype. ``block_v`` overrides the vocab tile width (tests use small tiles).

    Collectives: one all-gather of ``[TP, 4, N]`` fp32 partials in forward, none in backward.
    """
    _check_inputs(logits, targets, temperature)
    check_triton_device(logits, _partials_kernel)
    shard = VocabShard.of(logits.shape[-1], tp_group, vocab_size)
    flat_logits = row_major(logits.reshape(-1, logits.shape[-1]))
    flat_targets = targets.reshape(-1).contiguous()
    out = _LogprobsFunction.apply(
        flat_logits, flat_targets, shard, tp_group, float(temperature), int(ignore_index),
        bool(compute_entropy), block_v,
    )
    logp, ent = out if compute_entropy else (out, None)
    return logp.view(targets.shape), (ent.view(targets.shape) if ent is not None else None)
