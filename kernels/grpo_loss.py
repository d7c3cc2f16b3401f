"""Token-level GRPO/DAPO policy loss fused with the vocab-parallel log-probs: Triton path.

Reference, specification and config: :mod:`srpo_kernels.grpo_loss_reference`.

The logits shard is read once in forward and once in backward (the kernels of :mod:`srpo_kernels.logprobs`);
everything else is ``O(N)``:

1. forward: the log-prob partials kernel over the logits (loss-masked rows are skipped: never read), one
   all-gather of the ``[TP, 4, N]`` partials, the combine kernel (``lse``, ``logp``, ``entropy``);
2. one elementwise kernel over the tokens evaluates the loss terms, the per-block sums of the loss and of
   every metric (deterministic: no atomics), and the loss's gradient w.r.t. each token's ``logp`` and
   ``entropy``, which are saved;
3. backward: the log-prob gradient kernel, scaled by the incoming gradient (masked rows written as zeros
   without reading the logits).

Aggregation (token-mean, seq-mean-token-sum, seq-mean-token-mean) reduces to a per-token loss weight,
computed up front by :func:`token_weights`; the kernels never see sequences.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from srpo_kernels._tp import ProcessGroup, VocabShard
from srpo_kernels.grpo_loss_reference import METRIC_NAMES, GRPOLossConfig, _flatten_grpo_inputs
from srpo_kernels.logprobs import forward_stats, logprob_grad
from srpo_kernels.logprobs_reference import _check_inputs
from srpo_kernels.triton_utils import check_triton_device, row_major

_MASKED_TARGET = -1  # ignore_index given to the log-prob kernels for loss-masked tokens
# Per-block sums written by the token kernel, in this order; "loss" uses the loss weights, the rest the
# token-mean metric weights.
_SUMS = ("loss", *METRIC_NAMES)


@triton.jit
def _grpo_token_kernel(
    logp_ptr, ent_ptr, old_ptr, adv_ptr, ref_ptr, rollout_ptr, loss_w_ptr, metric_w_ptr,
    g_logp_ptr, g_ent_ptr, sums_ptr, n_tokens,
    eps_low, eps_high, dual_c, kl_coef, ent_coef, tis_cap,
    HAS_DUAL: tl.constexpr, HAS_KL: tl.constexpr, HAS_ENT: tl.constexpr, HAS_TIS: tl.constexpr,
    N_SUMS: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    in_range = offs < n_tokens
    loss_w = tl.load(loss_w_ptr + offs, mask=in_range, other=0.0)
    metric_w = tl.load(metric_w_ptr + offs, mask=in_range, other=0.0)
    active = (loss_w != 0.0) | (metric_w != 0.0)
    # inactive (masked) tokens may hold anything: replace their inputs so that every term is finite
    old = tl.where(active, tl.load(old_ptr + offs, mask=in_range, other=0.0).to(tl.float32), 0.0)
    adv = tl.where(active, tl.load(adv_ptr + offs, mask=in_range, other=0.0).to(tl.float32), 0.0)
    new = tl.where(active, tl.load(logp_ptr + offs, mask=in_range, other=0.0), old)
    zero = tl.zeros((BLOCK_N,), tl.float32)

    log_ratio = new - old
    ratio = tl.exp(log_ratio)
    pg_plain = -adv * ratio
    pg_clip = -adv * tl.minimum(tl.maximum(ratio, 1.0 - eps_low), 1.0 + eps_high)
    pg = tl.maximum(pg_plain, pg_clip)
    d_pg = tl.where(pg_clip > pg_plain, 0.0, pg_plain)  # d(-A r)/d logp = -A r; a clipped term is constant
    dual_flag = zero
    if HAS_DUAL:
        bound = -adv * dual_c
        dual = (adv < 0.0) & (pg > bound)
        pg = tl.where(dual, bound, pg)
        d_pg = tl.where(dual, 0.0, d_pg)
        dual_flag = dual.to(tl.float32)
    tis_flag = zero
    if HAS_TIS:
        rollout = tl.where(active, tl.load(rollout_ptr + offs, mask=in_range, other=0.0).to(tl.float32), old)
        is_weight = tl.exp(old - rollout)
        tis_flag = (is_weight > tis_cap).to(tl.float32)
        is_weight = tl.minimum(is_weight, tis_cap)
        pg *= is_weight
        d_pg *= is_weight
    per_token = pg
    d_token = d_pg
    kl_ref = zero
    if HAS_KL:
        ref = tl.where(active, tl.load(ref_ptr + offs, mask=in_range, other=0.0).to(tl.float32), new)
        diff = ref - new
        e_diff = tl.exp(diff)
        kl_ref = e_diff - diff - 1.0  # k3; its fp32 error is below that of the log-probs it is built from
        per_token += kl_coef * kl_ref
        d_token += kl_coef * (1.0 - e_diff)
    ent = zero
    if HAS_ENT:
        ent = tl.where(active, tl.load(ent_ptr + offs, mask=in_range, other=0.0), 0.0)
        per_token -= ent_coef * ent
        tl.store(g_ent_ptr + offs, -ent_coef * loss_w, mask=in_range)
    tl.store(g_logp_ptr + offs, loss_w * d_token, mask=in_range)

    clip_low = ((adv < 0.0) & (ratio < 1.0 - eps_low)).to(tl.float32)
    clip_high = ((adv > 0.0) & (ratio > 1.0 + eps_high)).to(tl.float32)
    approx_kl = ratio - 1.0 - log_ratio  # k3 estimate of KL(old || new)
    out = sums_ptr + pid * N_SUMS
    tl.store(out + 0, tl.sum(loss_w * per_token, axis=0))
    tl.store(out + 1, tl.sum(metric_w * pg, axis=0))
    tl.store(out + 2, tl.sum(metric_w * clip_low, axis=0))
    tl.store(out + 3, tl.sum(metric_w * clip_high, axis=0))
    tl.store(out + 4, tl.sum(metric_w * approx_kl, axis=0))
    tl.store(out + 5, tl.sum(metric_w * dual_flag, axis=0))
    tl.store(out + 6, tl.sum(metric_w * kl_ref, axis=0))
    tl.store(out + 7, tl.sum(metric_w * ent, axis=0))
    tl.store(out + 8, tl.sum(metric_w * tis_flag, axis=0))


def token_weights(
    loss_mask: torch.Tensor,
    config: GRPOLossConfig,
    seq_ids: torch.Tensor | None,
    num_global_tokens: float | torch.Tensor | None,
    num_global_seqs: float | torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 ``(loss_weight, metric_weight)`` per token such that ``loss = sum_i loss_weight_i * loss_i``.

    ``metric_weight`` is the token-mean weight ``m_i / num_global_tokens``; ``loss_weight`` depends on
    ``config.loss_agg_mode`` (``seq_ids`` flat, in ``[0, N)``, for the ``seq-mean-*`` modes). Both are zero
    exactly on masked tokens.
    """
    m = (loss_mask != 0).to(torch.float32)
    n_tokens = m.sum() if num_global_tokens is None else num_global_tokens
    metric_w = m / n_tokens
    if config.loss_agg_mode == "token-mean":
        return metric_w, metric_w
    seq_len = torch.zeros_like(m).index_add_(0, seq_ids, m)
    n_seqs = (seq_len > 0).sum() if num_global_seqs is None else num_global_seqs
    if config.loss_agg_mode == "seq-mean-token-sum":
        return m / n_seqs, metric_w
    return m / (seq_len[seq_ids].clamp(min=1.0) * n_seqs), metric_w


class _GRPOLossFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, old, adv, ref, rollout, loss_w, metric_w,
                shard, group, inv_temp, config, need_entropy, block_v):
        lse, logp, ent = forward_stats(
            logits, targets, shard, group,
            inv_temp=inv_temp, ignore_index=_MASKED_TARGET, compute_entropy=need_entropy, block_v=block_v,
        )
        n_tokens = targets.numel()
        block_n = min(1024, triton.next_power_of_2(max(n_tokens, 16)))
        n_blocks = triton.cdiv(n_tokens, block_n)
        g_logp = torch.empty_like(lse)
        g_ent = torch.empty_like(lse) if need_entropy else None
        sums = torch.zeros((max(n_blocks, 1), len(_SUMS)), dtype=torch.float32, device=lse.device)
        if n_tokens:
            _grpo_token_kernel[(n_blocks,)](
                logp, lse if ent is None else ent, old, adv,
                old if ref is None else ref, old if rollout is None else rollout, loss_w, metric_w,
                g_logp, g_logp if g_ent is None else g_ent, sums, n_tokens,
                config.clip_eps_low, config.clip_eps_high, config.dual_clip_c or 0.0,
                config.kl_coef, config.entropy_coef, config.tis_cap or 0.0,
                HAS_DUAL=config.dual_clip_c is not None, HAS_KL=ref is not None, HAS_ENT=need_entropy,
                HAS_TIS=config.tis_cap is not None, N_SUMS=len(_SUMS), BLOCK_N=block_n, num_warps=4,
            )
        totals = sums.sum(dim=0)
        ent_grad = g_ent if config.entropy_coef != 0.0 else None
        ctx.save_for_backward(logits, targets, lse, ent if ent_grad is not None else None, g_logp, ent_grad)
        ctx.config = (shard, inv_temp, block_v)
        metrics = totals[1:]
        ctx.mark_non_differentiable(metrics)
        return totals[0], metrics

    @staticmethod
    def backward(ctx, g_loss, _g_metrics):
        logits, targets, lse, ent, g_logp, g_ent = ctx.saved_tensors
        shard, inv_temp, block_v = ctx.config
        grad = logprob_grad(
            logits, targets, lse, ent, g_logp * g_loss, None if g_ent is None else g_ent * g_loss,
            col_start=shard.col_start, n_valid=shard.n_valid, inv_temp=inv_temp,
            ignore_index=_MASKED_TARGET, block_v=block_v,
        )
        return (grad,) + (None,) * 13


def grpo_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    loss_mask: torch.Tensor,
    *,
    config: GRPOLossConfig | None = None,
    ref_logp: torch.Tensor | None = None,
    rollout_logp: torch.Tensor | None = None,
    seq_ids: torch.Tensor | None = None,
    num_global_tokens: float | torch.Tensor | None = None,
    num_global_seqs: float | torch.Tensor | None = None,
    vocab_size: int | None = None,
    temperature: float = 1.0,
    compute_entropy: bool = False,
    tp_group: ProcessGroup | None = None,
    block_v: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO/DAPO policy loss from this rank's vocab shard of the logits: ``(loss, metrics)``.

    Same contract as :func:`srpo_kernels.grpo_loss_reference.reference_grpo_loss` (see there); the loss is a
    float32 scalar differentiable w.r.t. ``logits`` (gradient in the logits' dtype), the metrics are
    detached float32 scalars. ``block_v`` overrides the vocab tile width (tests use small tiles).
    """
    _check_inputs(logits, targets, temperature)
    check_triton_device(logits, _grpo_token_kernel)
    config = config or GRPOLossConfig()
    old, adv, mask, ref, rollout, seq = _flatten_grpo_inputs(
        targets, old_logp, advantages, loss_mask, ref_logp, rollout_logp, seq_ids, config
    )
    shard = VocabShard.of(logits.shape[-1], tp_group, vocab_size)
    need_entropy = compute_entropy or config.entropy_coef != 0.0
    loss_w, metric_w = token_weights(mask, config, seq, num_global_tokens, num_global_seqs)
    flat_targets = torch.where(mask != 0, targets.reshape(-1), _MASKED_TARGET).contiguous()
    loss, metric_values = _GRPOLossFunction.apply(
        row_major(logits.reshape(-1, logits.shape[-1])), flat_targets,
        old.contiguous(), adv.contiguous(),
        None if config.kl_coef == 0.0 else ref.contiguous(),
        None if config.tis_cap is None else rollout.contiguous(),
        loss_w, metric_w, shard, tp_group, 1.0 / float(temperature), config, need_entropy, block_v,
    )
    enabled = config.metric_names(entropy=need_entropy)
    metrics = {name: value for name, value in zip(_SUMS[1:], metric_values.unbind()) if name in enabled}
    return loss, metrics
