"""PyTorch reference for :mod:`srpo_kernels.grpo_loss`: the loss contract (config), the fp64 oracle and the
torch backend.

Per token ``i`` (``l`` = new log-prob of the target, ``o`` = old log-prob from the training engine before the
update, ``A`` = advantage, ``r = exp(l - o)``)::

    pg_i  = max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))          clip-higher (DAPO) when eps_high > eps_low
    pg_i  = min(pg_i, -A c)                  if A < 0 and dual_clip_c  dual-clip (Ye et al. 2020), c > 1
    pg_i *= min(exp(o - o_rollout), cap)     if tis_cap                truncated IS: trainer vs rollout engine
    loss_i = pg_i + kl_coef * k3(ref - l) - entropy_coef * entropy_i,    k3(x) = exp(x) - x - 1

and the batch loss is a weighted sum of the masked ``loss_i``:

* ``token-mean``: ``sum_i m_i loss_i / num_global_tokens``;
* ``seq-mean-token-sum``: ``sum_s (sum_{i in s} m_i loss_i) / num_global_seqs``;
* ``seq-mean-token-mean``: ``sum_s (sum_{i in s} m_i loss_i / sum_{i in s} m_i) / num_global_seqs``.

``num_global_tokens`` / ``num_global_seqs`` are counts over the *whole* optimizer step (all micro-batches and
DP ranks), so that summing the per-micro-batch losses (gradient accumulation, DP all-reduce-sum) gives the true
mean. ``None`` means "this call only" (its own mask). A sequence must not be split across calls.

Metrics, all detached and all token-means with the same ``num_global_tokens`` (so they also add up across
micro-batches and DP ranks): ``pg_loss``, ``clip_frac_low`` (A < 0 and r < 1 - eps_low),
``clip_frac_high`` (A > 0 and r > 1 + eps_high), ``approx_kl`` (k3 estimate of KL(old || new)), and when
enabled ``dual_clip_frac`` (A < 0 and pg clipped at -A c), ``kl_loss`` (k3 to the reference policy),
``entropy``, ``tis_clip_frac`` (tokens whose IS weight was truncated).

The [N]-sized loss math runs in float64 here (cheap); log-probs come from
:func:`srpo_kernels.logprobs_reference.reference_logprobs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from srpo_kernels._tp import ProcessGroup
from srpo_kernels.logprobs_reference import reference_logprobs

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean")


@dataclass(frozen=True)
class GRPOLossConfig:
    """Hyper-parameters of the token-level GRPO/DAPO policy loss (shared by every backend)."""

    clip_eps_low: float = 0.2
    """Lower clip range: the ratio is clipped at ``1 - clip_eps_low`` for negative advantages."""
    clip_eps_high: float = 0.28
    """Upper clip range, ``1 + clip_eps_high`` for positive advantages (DAPO clip-higher; 0.2 = vanilla)."""
    dual_clip_c: float | None = None
    """Dual-clip constant ``c > 1`` bounding the loss of negative-advantage tokens at ``-A c``; None: off."""
    kl_coef: float = 0.0
    """Weight of the k3 KL penalty to the reference policy (needs ``ref_logp``); 0: off."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus (subtracted from the loss); 0: off."""
    tis_cap: float | None = None
    """Truncated importance sampling: weight ``min(exp(old - rollout), tis_cap)`` on the policy-gradient
    term, correcting for the rollout engine's log-probs differing from the trainer's (needs
    ``rollout_logp``); None: off."""
    loss_agg_mode: str = "token-mean"
    """One of ``token-mean`` (DAPO), ``seq-mean-token-sum``, ``seq-mean-token-mean`` (original GRPO)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.clip_eps_low < 1.0:
            raise ValueError(f"clip_eps_low must be in [0, 1), got {self.clip_eps_low}")
        if not self.clip_eps_high >= 0.0:
            raise ValueError(f"clip_eps_high must be >= 0, got {self.clip_eps_high}")
        if self.dual_clip_c is not None and not self.dual_clip_c > 1.0:
            raise ValueError(f"dual_clip_c must be > 1 (typically 3), or None to disable; got {self.dual_clip_c}")
        if not self.kl_coef >= 0.0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        if self.tis_cap is not None and not self.tis_cap > 0.0:
            raise ValueError(f"tis_cap must be > 0 (typically 2), or None to disable; got {self.tis_cap}")
        if self.loss_agg_mode not in LOSS_AGG_MODES:
            raise ValueError(f"loss_agg_mode must be one of {LOSS_AGG_MODES}, got {self.loss_agg_mode!r}")

    @property
    def needs_seq_ids(self) -> bool:
        return self.loss_agg_mode != "token-mean"

    def metric_names(self, *, entropy: bool) -> tuple[str, ...]:
        """The metrics a loss call under this config returns (in :data:`METRIC_NAMES` order); ``entropy``: whether
        the call computes the entropy (always when ``entropy_coef`` is set)."""
        enabled = {"dual_clip_frac": self.dual_clip_c is not None, "kl_loss": self.kl_coef != 0.0,
                   "entropy": entropy or self.entropy_coef != 0.0, "tis_clip_frac": self.tis_cap is not None}
        return tuple(name for name in METRIC_NAMES if enabled.get(name, True))


# Every metric any config can give, in the order the kernels write their sums.
METRIC_NAMES = ("pg_loss", "clip_frac_low", "clip_frac_high", "approx_kl", "dual_clip_frac", "kl_loss", "entropy",
                "tis_clip_frac")


def reference_grpo_loss(
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
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO/DAPO policy loss from this rank's vocab shard of the logits; returns ``(loss, metrics)``.

    Args:
        logits: ``[..., V/TP]`` logits shard (see :func:`~srpo_kernels.logprobs_reference.reference_logprobs`).
        targets: ``[...]`` global target ids; those of masked tokens are never used.
        old_logp, advantages, loss_mask: ``[...]`` per token; ``loss_mask`` is boolean (or 0/1).
        config: the loss hyper-parameters (default: ``GRPOLossConfig()``).
        ref_logp: reference-policy log-probs, required iff ``config.kl_coef > 0``.
        rollout_logp: rollout-engine log-probs, required iff ``config.tis_cap`` is set.
        seq_ids: ``[...]`` sequence index of each token in ``[0, N)``, for the ``seq-mean-*`` modes
            (default for 2-D ``[B, T]`` inputs: the row).
        num_global_tokens, num_global_seqs: normalisers (see the module docstring).
        vocab_size, temperature, tp_group: as for the log-probs.
        compute_entropy: report the entropy metric (implied by ``config.entropy_coef != 0``).
        chunk_size: tokens per checkpointed chunk of the log-prob computation (``None``: all at once).
    """
    config = config or GRPOLossConfig()
    flat = _flatten_grpo_inputs(targets, old_logp, advantages, loss_mask, ref_logp, rollout_logp, seq_ids, config)
    need_entropy = compute_entropy or config.entropy_coef != 0.0
    logp, entropy = reference_logprobs(
        logits, targets, vocab_size=vocab_size, temperature=temperature, compute_entropy=need_entropy,
        tp_group=tp_group, chunk_size=chunk_size,
    )
    loss, metrics = grpo_loss_from_logprobs(
        logp.reshape(-1), None if entropy is None else entropy.reshape(-1), *flat, config=config,
        num_global_tokens=num_global_tokens, num_global_seqs=num_global_seqs,
    )
    out_dtype = torch.promote_types(logits.dtype, torch.float32)
    return loss.to(out_dtype), {k: v.to(out_dtype) for k, v in metrics.items()}


def grpo_loss_from_logprobs(
    logp: torch.Tensor,
    entropy: torch.Tensor | None,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    loss_mask: torch.Tensor,
    ref_logp: torch.Tensor | None,
    rollout_logp: torch.Tensor | None,
    seq_ids: torch.Tensor | None,
    *,
    config: GRPOLossConfig,
    num_global_tokens: float | torch.Tensor | None = None,
    num_global_seqs: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss from flat ``[N]`` per-token log-probs (differentiable w.r.t. ``logp`` and ``entropy``).

    Composes with :func:`srpo_kernels.fused_linear_logprobs.fused_linear_logprobs` for a loss straight from
    hidden states. Runs in float64; returns float64.
    """
    f64 = torch.float64
    mask = loss_mask != 0
    m = mask.to(f64)
    old, adv = old_logp.to(f64), advantages.to(f64)
    new = torch.where(mask, logp.to(f64), old)  # masked tokens: ratio 1, finite, no gradient
    ratio = torch.exp(new - old)

    pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(1.0 - config.clip_eps_low, 1.0 + config.clip_eps_high))
    if config.dual_clip_c is not None:
        pg = torch.where(adv < 0, torch.minimum(pg, -adv * config.dual_clip_c), pg)
    if config.tis_cap is not None:
        is_weight = torch.exp(old - rollout_logp.to(f64))
        pg = pg * is_weight.clamp(max=config.tis_cap)
    per_token = pg
    if config.kl_coef != 0.0:
        diff = torch.where(mask, ref_logp.to(f64), new) - new
        kl_ref = torch.exp(diff) - diff - 1.0
        per_token = per_token + config.kl_coef * kl_ref
    if config.entropy_coef != 0.0:
        per_token = per_token - config.entropy_coef * torch.where(mask, entropy.to(f64), 0.0)

    n_tokens = m.sum() if num_global_tokens is None else torch.as_tensor(num_global_tokens, dtype=f64)
    masked = torch.where(mask, per_token, 0.0)
    if config.loss_agg_mode == "token-mean":
        loss = masked.sum() / n_tokens
    else:
        seq_sum = masked.new_zeros(masked.numel()).index_add(0, seq_ids, masked)
        seq_len = m.new_zeros(m.numel()).index_add(0, seq_ids, m)
        has_tokens = seq_len > 0
        n_seqs = has_tokens.sum() if num_global_seqs is None else torch.as_tensor(num_global_seqs, dtype=f64)
        if config.loss_agg_mode == "seq-mean-token-mean":
            seq_sum = torch.where(has_tokens, seq_sum / seq_len.clamp(min=1.0), 0.0)
        loss = seq_sum.sum() / n_seqs

    def token_mean(x: torch.Tensor) -> torch.Tensor:
        return (torch.where(mask, x.detach().to(f64), 0.0)).sum() / n_tokens

    log_ratio = (new - old).detach()
    metrics = {
        "pg_loss": token_mean(pg),
        "clip_frac_low": token_mean(((adv < 0) & (ratio < 1.0 - config.clip_eps_low)).to(f64)),
        "clip_frac_high": token_mean(((adv > 0) & (ratio > 1.0 + config.clip_eps_high)).to(f64)),
        "approx_kl": token_mean(torch.exp(log_ratio) - 1.0 - log_ratio),
    }
    if config.dual_clip_c is not None:
        metrics["dual_clip_frac"] = token_mean(((adv < 0) & (ratio > config.dual_clip_c)).to(f64))
    if config.kl_coef != 0.0:
        metrics["kl_loss"] = token_mean(kl_ref)
    if entropy is not None:
        metrics["entropy"] = token_mean(entropy)
    if config.tis_cap is not None:
        metrics["tis_clip_frac"] = token_mean((is_weight > config.tis_cap).to(f64))
    return loss, metrics


def _flatten_grpo_inputs(targets, old_logp, advantages, loss_mask, ref_logp, rollout_logp, seq_ids, config):
    """Validate the per-token inputs against ``targets`` and the config; return them flattened to ``[N]``."""
    shape = targets.shape
    named = {"old_logp": old_logp, "advantages": advantages, "loss_mask": loss_mask,
             "ref_logp": ref_logp, "rollout_logp": rollout_logp, "seq_ids": seq_ids}
    for name, t in named.items():
        if t is not None and t.shape != shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected the targets' shape {tuple(shape)}")
    if config.kl_coef != 0.0 and ref_logp is None:
        raise ValueError("config.kl_coef > 0 needs ref_logp (reference-policy log-probs); pass it or set 0")
    if config.tis_cap is not None and rollout_logp is None:
        raise ValueError("config.tis_cap needs rollout_logp (the rollout engine's log-probs); pass it or set None")
    if config.needs_seq_ids and seq_ids is None:
        if len(shape) != 2:
            raise ValueError(
                f"loss_agg_mode={config.loss_agg_mode!r} needs seq_ids for {len(shape)}-D inputs "
                "(only [batch, seq] inputs default to one sequence per row)"
            )
        seq_ids = torch.arange(shape[0], device=targets.device)[:, None].expand(shape)
    if seq_ids is not None:
        seq_ids = seq_ids.long()
    return tuple(None if t is None else t.reshape(-1) for t in
                 (old_logp, advantages, loss_mask, ref_logp, rollout_logp, seq_ids))
