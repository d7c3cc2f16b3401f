"""The trainer's per-token log-probs and GRPO loss from what the last pipeline stage hands over.

Two paths, one switch (``train.fused_lm_head``):

* fused LM head (default): the final hidden states ``[s, b, h]`` and this rank's vocab shard of the output
  weight (:class:`~srpo_mcore.model.forward.LMHeadInput`) go through ``srpo_kernels`` ``fused_linear_logprobs``
  (vocab-parallel, chunked over the vocabulary: the ``[tokens, V/TP]`` logits never exist), then the ``[N]``-sized
  ``grpo_loss_from_logprobs``. Gradients flow into the hidden states and the output (or tied embedding) weight.
* logits: Megatron's output layer produced the ``[b, s, V/TP]`` logits; the ``logprobs`` / ``grpo_loss`` ops read
  them.

Both take the kernel backend (``torch`` or ``triton``) from ``train.kernel_backend`` and give the same values to
fp32 rounding (tests/distributed/test_qwen2_parity.py). Everything is in the micro-batch's ``[b, s]`` layout on
the way in and out; the fused path transposes only the ``[s, b]`` per-token tensors.
"""

from __future__ import annotations

import torch

from srpo_mcore.model.forward import HeadOutput, LMHeadInput, MicroBatch


class TokenLoss:
    """Log-probs of the sampled tokens and the GRPO loss of one micro-batch (last pipeline stage)."""

    def __init__(self, *, fused: bool, backend: str, loss_config, vocab_size: int, temperature: float,
                 tp_group=None):
        from srpo_kernels.backends import get_op

        self.fused = fused
        self.head = "hidden" if fused else "logits"
        self.loss_config = loss_config
        self._kwargs = {"vocab_size": vocab_size, "temperature": temperature, "tp_group": tp_group}
        if fused:
            from srpo_kernels.grpo_loss_reference import grpo_loss_from_logprobs

            self._linear_logprobs = get_op("fused_linear_logprobs", backend)
            self._loss_from_logprobs = grpo_loss_from_logprobs
        else:
            self._logprobs = get_op("logprobs", backend)
            self._loss = get_op("grpo_loss", backend)

    def _check(self, out: HeadOutput) -> None:
        if isinstance(out, LMHeadInput) != self.fused:
            raise TypeError(f"the {'fused LM head' if self.fused else 'logits'} loss path got "
                            f"{type(out).__name__}: run the model with head={self.head!r}")

    def _fused_logprobs(self, out: LMHeadInput, targets: torch.Tensor, *, entropy: bool):
        """``[b, s]`` log-probs (and entropy) from ``[s, b, h]`` hidden states: targets go in as ``[s, b]``."""
        logp, ent = self._linear_logprobs(out.hidden, out.weight, targets.t(), compute_entropy=entropy,
                                          reduce_grad_input=out.reduce_grad_input, **self._kwargs)
        return logp.t(), (ent.t() if ent is not None else None)

    def logprobs(self, out: HeadOutput, mb: MicroBatch) -> torch.Tensor:
        """Float32 log-probs ``[b, s]`` of the micro-batch's targets."""
        self._check(out)
        targets = mb.extras["targets"]
        if isinstance(out, LMHeadInput):
            return self._fused_logprobs(out, targets, entropy=False)[0].float()
        b, s, v = out.shape
        logp, _ = self._logprobs(out.reshape(b * s, v), targets.reshape(-1), **self._kwargs)
        return logp.reshape(b, s).float()

    def loss(self, out: HeadOutput, mb: MicroBatch, *, with_reference: bool, old_from_forward: bool = False
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The micro-batch's loss, summed (normalisers 1: Megatron divides by the step's count), and the metric
        sums; ``with_reference``: ``extras["ref_logprobs"]`` feeds the KL term.

        The PPO "old" log-probs come from ``extras["old_logprobs"]`` (a separate forward-only pass), or with
        ``old_from_forward`` from this very forward, detached (the on-policy update: ratio 1, the gradient of the
        clipped surrogate is ``-A grad log p``); they are then stored in ``extras["old_logprobs"]`` (zero off the
        loss mask, as the separate pass stores them) for the stale-weight guard and TIS."""
        self._check(out)
        cfg, ex = self.loss_config, mb.extras
        b, s = ex["targets"].shape
        head = out if isinstance(out, LMHeadInput) else None  # the fused path's input; None: logits
        fused = head is not None
        if head is not None:  # the loss's log-probs and entropy: one chunked pass over the vocabulary
            logp, ent = self._fused_logprobs(head, ex["targets"], entropy=True)
        if old_from_forward:
            if fused:
                current = logp.detach().float()
            else:  # the grpo_loss op computes its log-probs inside: the logprobs op reads the same logits first
                with torch.no_grad():
                    current = self.logprobs(out, mb)
            ex["old_logprobs"] = torch.where(ex["loss_mask"].bool(), current, torch.zeros_like(current))
        per_token = {
            "old_logp": ex["old_logprobs"].reshape(-1),
            "advantages": ex["advantages"].reshape(-1),
            "loss_mask": ex["loss_mask"].reshape(-1),
            "rollout_logp": ex["rollout_logprobs"].reshape(-1) if cfg.tis_cap else None,
            "ref_logp": ex["ref_logprobs"].reshape(-1) if with_reference else None,
            "seq_ids": _sequence_ids(mb) if cfg.needs_seq_ids else None,
        }
        if head is None:
            assert isinstance(out, torch.Tensor)
            return self._loss(out.reshape(b * s, -1), ex["targets"].reshape(-1), **per_token, config=cfg,
                              num_global_tokens=1.0, num_global_seqs=1.0, compute_entropy=True, **self._kwargs)
        loss, metrics = self._loss_from_logprobs(
            logp.reshape(-1), ent.reshape(-1), per_token["old_logp"], per_token["advantages"],
            per_token["loss_mask"], per_token["ref_logp"], per_token["rollout_logp"], per_token["seq_ids"],
            config=cfg, num_global_tokens=1.0, num_global_seqs=1.0,
        )
        out_dtype = torch.promote_types(head.hidden.dtype, torch.float32)  # as the logits path returns it
        return loss.to(out_dtype), {k: v.to(out_dtype) for k, v in metrics.items()}


def _sequence_ids(mb: MicroBatch) -> torch.Tensor:
    """Each token's sequence, flat: the packed row's ``seq_ids`` (its samples), or the row index of plain rows."""
    if "seq_ids" in mb.extras:
        return mb.extras["seq_ids"].reshape(-1)
    b, s = mb.extras["targets"].shape
    return torch.arange(b, device=mb.extras["targets"].device).repeat_interleave(s)
