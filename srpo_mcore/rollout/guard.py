"""Stale-weight guard: compare vLLM's sampling log-probs with the trainer's recomputation on the same tokens.

Right after a sync the two differ only by numerics (mean |delta| measured on the CPU quickstart model: fp32 3-4e-7
nats, bf16 params and engine 0.85-2.4e-3). A skipped or partial sync, or a layout bug, shows up as a jump (one
skipped sync in bf16 at lr 1e-4: 1.5e-2; ``debug.skip_weight_sync_at_step`` provokes it). Each :meth:`MismatchGuard.update` measures, over the (masked) tokens:
mean and max ``|delta|`` with ``delta = trainer - rollout``, and the fraction of tokens whose probability ratio
``exp(delta)`` falls outside ``[0.5, 2]``. It keeps a running baseline of mean ``|delta|`` (an exponential moving
average over healthy updates) and raises the alarm when mean ``|delta|`` exceeds ``alarm_ratio`` times
``max(baseline, floor)``; the first update only sets the baseline. On alarm it logs an error, counts it, returns
``stats.alarm = True`` and, with ``raise_on_alarm``, raises :class:`StaleWeightsError`.

When it judges (srpo_mcore/train/trainer.py, ``srpo_step``): with a separate old-log-prob pass (several updates per
step, or ``train.old_logprobs=recompute``) the trainer's log-probs come from that pass, before any update. On the
on-policy fast path (``train.old_logprobs=auto`` and one update per step) they are the training forward's own
log-probs (detached, masked response tokens, the weights before the update): the same statistics over the same
tokens, but the verdict comes after that step's optimizer update. It still comes before the step's weight sync and
before the step is logged or checkpointed, so with ``train.mismatch_alarm_action=raise`` the run stops with no
checkpoint holding that update (the next start resumes from the last checkpoint, written before it).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.distributed as dist

from srpo_mcore.config.rollout import RolloutConfig

logger = logging.getLogger(__name__)

RATIO_BOUNDS = (0.5, 2.0)


class StaleWeightsError(RuntimeError):
    """The rollout engine's log-probs disagree with the trainer's far more than usual (stale weights?)."""


@dataclass(frozen=True)
class MismatchStats:
    mean_abs: float
    max_abs: float
    frac_ratio_outside: float  # fraction of tokens with exp(delta) outside [0.5, 2]
    tokens: int
    baseline: float | None  # the running baseline before this update
    alarm: bool

    def as_metrics(self) -> dict[str, float]:
        """The step's ``mismatch/*`` metrics."""
        return {"mismatch/mean_abs": self.mean_abs, "mismatch/max_abs": self.max_abs,
                "mismatch/frac_ratio_outside": self.frac_ratio_outside, "mismatch/alarm": float(self.alarm)}


class MismatchGuard:
    def __init__(self, alarm_ratio: float, floor: float, *, raise_on_alarm: bool = False, momentum: float = 0.9):
        if alarm_ratio <= 1.0:
            raise ValueError(f"alarm_ratio must be > 1, got {alarm_ratio}")
        self.alarm_ratio, self.floor, self.raise_on_alarm, self.momentum = alarm_ratio, floor, raise_on_alarm, momentum
        self.baseline: float | None = None
        self.alarms = 0

    @classmethod
    def from_config(cls, cfg: RolloutConfig, *, raise_on_alarm: bool = False) -> MismatchGuard:
        return cls(cfg.mismatch_alarm_ratio, cfg.mismatch_alarm_floor, raise_on_alarm=raise_on_alarm)

    @torch.no_grad()
    def update(self, rollout_logprobs: torch.Tensor, trainer_logprobs: torch.Tensor,
               mask: torch.Tensor | None = None, group=None) -> MismatchStats:
        """Measure one batch (same shapes; ``mask`` selects real tokens). With ``group`` the statistics are
        reduced over it (e.g. the data-parallel group of the last PP stage), so every member gets the same
        verdict."""
        delta = (trainer_logprobs.double() - rollout_logprobs.double()).abs()
        if mask is not None:
            delta = delta[mask.bool()]
        bound = math.log(RATIO_BOUNDS[1])  # |log ratio| > ln 2  <=>  ratio outside [0.5, 2]
        sums = torch.tensor([delta.sum().item(), float(delta.numel()), float((delta > bound).sum().item())],
                            dtype=torch.float64)
        peak = torch.tensor([delta.max().item() if delta.numel() else 0.0], dtype=torch.float64)
        if group is not None and dist.get_world_size(group) > 1:
            dist.all_reduce(sums, group=group)
            dist.all_reduce(peak, op=dist.ReduceOp.MAX, group=group)
        total, tokens, outside = sums.tolist()
        if tokens == 0:
            raise ValueError("no tokens to compare")
        mean = total / tokens
        baseline = self.baseline
        alarm = baseline is not None and mean > self.alarm_ratio * max(baseline, self.floor)
        stats = MismatchStats(mean_abs=mean, max_abs=peak.item(), frac_ratio_outside=outside / tokens,
                              tokens=int(tokens), baseline=baseline, alarm=alarm)
        if alarm:
            self.alarms += 1
            message = (f"stale-weight alarm: mean |log p_trainer - log p_rollout| = {mean:.3g} nats is "
                       f"{mean / max(baseline or 0.0, self.floor):.1f}x the running baseline {baseline:.3g} (max {stats.max_abs:.3g}, "
                       f"{stats.frac_ratio_outside:.1%} of {int(tokens)} tokens with ratio outside {RATIO_BOUNDS}); "
                       "was a weight sync skipped or incomplete?")
            logger.error(message)
            if self.raise_on_alarm:
                raise StaleWeightsError(message)
        else:
            self.baseline = mean if baseline is None else self.momentum * baseline + (1 - self.momentum) * mean
        return stats
