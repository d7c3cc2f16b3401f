"""The policy being trained: this rank's Megatron shard, wrapped in DDP, its optimizer, and the GRPO loss.

Operations over this data-parallel rank's micro-batches, each through Megatron's schedule:

* :meth:`Policy.compute_old_logprobs` - forward only; stores the trainer's log-probs of the sampled tokens in each
  micro-batch (``extras["old_logprobs"]``, last pipeline stage, the PPO "old" policy) and returns them with the
  rollout engine's (the stale-weight guard's input).
* :meth:`Policy.compute_reference_logprobs` - forward only through the frozen reference model
  (``algorithm.kl_coef > 0``): ``extras["ref_logprobs"]``, the KL term's input.
* :meth:`Policy.train_step` - forward/backward with the token-level GRPO loss, then one optimizer step. With
  ``old_from_forward`` (an on-policy update: the step's only one, from fresh rollouts) it needs no
  ``compute_old_logprobs`` first: the loss takes the old log-probs from its own forward, detached, and stores
  them as that pass would; :meth:`Policy.guard_logprobs` then reads the guard's input.

:meth:`Policy.compute_logprobs` runs both forward-only passes.

Log-probs and the loss come from :class:`~srpo_mcore.train.loss.TokenLoss`: by default from the final hidden
states and the output weight through the fused LM-head kernel (``train.fused_lm_head``), else from Megatron's
logits.

Normalisation: the loss of a micro-batch is the *sum* over its response tokens (or sequences, for the
``seq-mean-*`` modes) and the schedule gets the matching count; Megatron divides the gradients by the count
summed over all micro-batches and data-parallel ranks (``calculate_per_token_loss``), i.e. the global
token-level mean SRPO uses.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from srpo_mcore.config import SRPOConfig
from srpo_mcore.distributed import ParallelState
from srpo_mcore.model.dtypes import torch_dtype
from srpo_mcore.model.forward import MicroBatch, forward_backward
from srpo_mcore.model.qwen2 import build_model
from srpo_mcore.train.loss import TokenLoss
from srpo_mcore.train.optim import LRScheduler, build_optimizer, wrap_ddp


class Policy:
    def __init__(self, cfg: SRPOConfig, state: ParallelState):
        from srpo_kernels.grpo_loss_reference import GRPOLossConfig

        self.cfg = cfg
        self.state = state
        self.chunk = build_model(cfg.model, cfg.parallel, pre_process=state.is_first_stage,
                                 post_process=state.is_last_stage)
        self.ddp = wrap_ddp(self.chunk, cfg.parallel)
        self.optimizer = build_optimizer(self.ddp, cfg.optimizer, cfg.parallel, torch_dtype(cfg.model.params_dtype))
        self.lr_scheduler = LRScheduler(self.optimizer, cfg.optimizer,
                                        total_updates=cfg.train.steps * cfg.train.mini_batches_per_step)
        alg = cfg.algorithm
        loss_config = GRPOLossConfig(
            clip_eps_low=alg.clip_eps_low, clip_eps_high=alg.clip_eps_high, dual_clip_c=alg.dual_clip_c,
            kl_coef=alg.kl_coef, entropy_coef=alg.entropy_coef, tis_cap=alg.tis_cap,
            loss_agg_mode=alg.loss_aggregation,
        )
        self.token_loss = TokenLoss(
            fused=cfg.train.fused_lm_head, backend=cfg.train.kernel_backend, loss_config=loss_config,
            vocab_size=cfg.model.vocab_size, temperature=cfg.rollout.temperature,
            tp_group=state.tp_group if state.tp_size > 1 else None,
        )
        # SRPO trains without KL; with algorithm.kl_coef > 0 a frozen copy of the initial policy gives the
        # reference log-probs of the k3 penalty (same layout as the policy, no DDP, no optimizer).
        self.reference = None
        if alg.kl_coef != 0.0:
            self.reference = build_model(cfg.model, cfg.parallel, pre_process=state.is_first_stage,
                                         post_process=state.is_last_stage)
            self.reference.requires_grad_(False)
            self.reference.eval()

    def load_initial_weights(self, hf_dir: str, *, policy: bool) -> None:
        """Load the HF starting point into the reference model (always) and the policy (when ``policy``; a
        resumed run takes the policy from its checkpoint instead)."""
        from srpo_mcore.model.hf_checkpoint import load_hf_into_model

        targets = ([self.chunk] if policy else []) + ([self.reference] if self.reference is not None else [])
        for model in targets:
            load_hf_into_model(model, self.cfg.model, hf_dir, self.state.tp_rank, self.state.tp_size)
        if policy:  # bf16/fp16 params: the optimizer's fp32 main copies were taken at build time, from the random init
            self.optimizer.reload_model_params()

    # ----------------------------------------------------------------------------------------- helpers
    def _reduce_to_all(self, values: dict[str, float]) -> dict[str, float]:
        """Sum scalars (floats or 0-dim tensors on the model's device) that live on (last stage, TP rank 0) ranks
        over the whole job; result on every rank. One all-reduce, on the model's device."""
        keys = sorted(values)
        contributes = self.state.is_last_stage and self.state.tp_rank == 0
        vec = torch.stack([torch.as_tensor(values[k], dtype=torch.float64, device=self.state.device) for k in keys])
        if not contributes:
            vec.zero_()
        dist.all_reduce(vec)
        return dict(zip(keys, vec.tolist()))

    # ------------------------------------------------------------------------------------------- ops
    @torch.no_grad()
    def compute_old_logprobs(self, micro_batches: list[MicroBatch]) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the trainer's log-probs of the sampled tokens in each micro-batch (``extras["old_logprobs"]``,
        last stage; zero off the loss mask) and return :meth:`guard_logprobs`."""
        loss_path = self.token_loss

        def measure(head_output, mb):
            logp = loss_path.logprobs(head_output, mb)
            mb.extras["old_logprobs"] = torch.where(mb.extras["loss_mask"].bool(), logp, torch.zeros_like(logp))
            return _no_loss(logp)

        self.ddp.eval()
        forward_backward(self.ddp, micro_batches, measure, forward_only=True, head=loss_path.head)
        self.ddp.train()
        return self.guard_logprobs(micro_batches)

    @torch.no_grad()
    def compute_reference_logprobs(self, micro_batches: list[MicroBatch]) -> None:
        """Store the reference model's log-probs in each micro-batch (``extras["ref_logprobs"]``, last stage);
        nothing without a reference (``algorithm.kl_coef == 0``)."""
        if self.reference is None:
            return
        loss_path = self.token_loss

        def reference_logprobs(head_output, mb):
            mb.extras["ref_logprobs"] = loss_path.logprobs(head_output, mb)
            return _no_loss(mb.extras["ref_logprobs"])

        forward_backward(self.reference, micro_batches, reference_logprobs, forward_only=True, head=loss_path.head)

    def compute_logprobs(self, micro_batches: list[MicroBatch]) -> tuple[torch.Tensor, torch.Tensor]:
        """Both forward-only passes: :meth:`compute_old_logprobs` (whose result it returns), then
        :meth:`compute_reference_logprobs`."""
        pair = self.compute_old_logprobs(micro_batches)
        self.compute_reference_logprobs(micro_batches)
        return pair

    def guard_logprobs(self, micro_batches: list[MicroBatch]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rollout, trainer)`` log-probs of all response tokens as flat tensors, from each micro-batch's
        ``rollout_logprobs`` and ``old_logprobs`` (empty on other stages than the last): the stale-weight guard's
        input."""
        if not self.state.is_last_stage or not micro_batches:
            empty = torch.zeros(0, device=self.state.device)
            return empty, empty
        masks = [mb.extras["loss_mask"].bool() for mb in micro_batches]
        return (torch.cat([mb.extras["rollout_logprobs"][m] for mb, m in zip(micro_batches, masks)]),
                torch.cat([mb.extras["old_logprobs"][m] for mb, m in zip(micro_batches, masks)]))

    @property
    def loss_metrics(self) -> tuple[str, ...]:
        """The loss terms this configuration computes and :meth:`train_step` logs (the loss always computes the
        entropy)."""
        return self.token_loss.loss_config.metric_names(entropy=True)

    def train_step(self, micro_batches: list[MicroBatch], *, global_tokens: float, global_sequences: float,
                   old_from_forward: bool = False) -> dict[str, float]:
        """One optimizer update over this rank's micro-batches; returns step metrics (token means; the loss is
        normalised like the gradient: by tokens for token-mean, by sequences for the seq-mean modes).

        The old log-probs: ``extras["old_logprobs"]`` from :meth:`compute_old_logprobs`, or with
        ``old_from_forward`` this update's own forward, detached (on-policy only; stored in
        ``extras["old_logprobs"]``, from the weights before the update). The two agree because the training
        forward computes the same function as the forward-only pass: the model has no dropout
        (srpo_mcore/model/qwen2.py sets hidden and attention dropout to 0)."""
        token_mean = self.cfg.algorithm.loss_aggregation == "token-mean"
        terms = self.loss_metrics
        sums = {k: 0.0 for k in ("loss", *terms)}

        def loss_fn(head_output, mb):
            loss, metrics = self.token_loss.loss(head_output, mb, with_reference=self.reference is not None,
                                                 old_from_forward=old_from_forward)
            mask = mb.extras["loss_mask"]
            count = mask.sum() if token_mean else mb.extras["num_sequences"]  # samples with response tokens
            # summed on the device (no host sync per micro-batch); out of place: loss.detach() shares loss's storage
            sums["loss"] = sums["loss"] + loss.detach()
            for key in terms:
                sums[key] = sums[key] + metrics[key].detach()
            return loss, count.to(torch.int), {}

        self.ddp.zero_grad_buffer()
        self.optimizer.zero_grad()
        forward_backward(self.ddp, micro_batches, loss_fn, forward_only=False, head=self.token_loss.head)
        update_ok, grad_norm, _ = self.optimizer.step()
        totals = self._reduce_to_all(sums)
        out = {f"loss/{k}": v / max(global_tokens, 1.0) for k, v in totals.items() if k != "loss"}
        out["loss/policy"] = totals["loss"] / max(global_tokens if token_mean else global_sequences, 1.0)
        out["optim/grad_norm"] = float(grad_norm) if grad_norm is not None else float("nan")
        out["optim/update_skipped"] = 0.0 if update_ok else 1.0
        out["optim/lr"] = self.optimizer.param_groups[0]["lr"]  # the rate this update used
        if update_ok:
            self.lr_scheduler.step()
        return out


def _no_loss(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """What a forward-only pass hands Megatron's schedule: a zero loss and a unit count."""
    return like.sum() * 0.0, torch.tensor(1, dtype=torch.int, device=like.device), {}
