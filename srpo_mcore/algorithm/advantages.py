"""GRPO advantages: each response's reward relative to the other responses to the same prompt.

    A[g, i] = (r[g, i] - mean_g(r)) / (std_g(r) + eps)      (or without the division)

``std_g`` is the sample standard deviation (Bessel-corrected, as ``torch.std``). Group statistics are taken
over every response of the group, truncated ones included; a truncated response (finish_reason "length")
then gets advantage 0 when ``zero_truncated`` is set, so it contributes no gradient (DAPO's overlong
filtering). A group whose rewards are all equal has advantage exactly 0 for every response: it contributes
nothing to the update, and the fraction of such groups is what History Resampling exists to lower.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GroupAdvantages:
    """Advantages of ``num_groups`` prompts x ``group_size`` responses, with per-group statistics."""

    advantages: torch.Tensor  # float32 [num_groups, group_size]
    group_mean: torch.Tensor  # float32 [num_groups], mean reward of each group
    group_std: torch.Tensor  # float32 [num_groups], sample std of each group's rewards
    zero_advantage: torch.Tensor  # bool [num_groups], every response of the group has advantage 0
    equal_rewards: torch.Tensor  # bool [num_groups], every response got the same reward

    @property
    def num_groups(self) -> int:
        return self.advantages.shape[0]

    @property
    def zero_advantage_fraction(self) -> float:
        """Share of groups that contribute no gradient (equal rewards, or all non-zero ones truncated)."""
        return self.zero_advantage.float().mean().item() if self.num_groups else 0.0

    @property
    def equal_reward_fraction(self) -> float:
        return self.equal_rewards.float().mean().item() if self.num_groups else 0.0

    def flat(self) -> torch.Tensor:
        """Per-sample advantages in group-major order (group 0's responses, then group 1's, ...)."""
        return self.advantages.reshape(-1)


def grpo_advantages(
    rewards: torch.Tensor,
    truncated: torch.Tensor | None = None,
    *,
    normalize_by_std: bool = True,
    eps: float = 1e-6,
    zero_truncated: bool = True,
) -> GroupAdvantages:
    """Group-normalised advantages.

    Args:
        rewards: ``[num_groups, group_size]``, row g holds the rewards of prompt g's responses.
        truncated: bool, same shape; True where the response stopped at the length limit.
        normalize_by_std: divide by ``std + eps``; False gives ``r - mean`` (Dr. GRPO style).
        eps: added to the std.
        zero_truncated: truncated responses get advantage 0.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 1:
        raise ValueError(f"rewards must be [num_groups, group_size >= 1], got shape {tuple(rewards.shape)}")
    if truncated is not None and truncated.shape != rewards.shape:
        raise ValueError(f"truncated has shape {tuple(truncated.shape)}, rewards {tuple(rewards.shape)}")
    r = rewards.detach().to(torch.float64)
    if not torch.isfinite(r).all():
        raise ValueError("rewards contain NaN or inf")
    mean = r.mean(dim=1)
    std = r.std(dim=1) if r.shape[1] > 1 else torch.zeros_like(mean)
    equal = r.amax(dim=1) == r.amin(dim=1)
    adv = r - mean[:, None]
    if normalize_by_std:
        adv = adv / (std[:, None] + eps)
    adv[equal] = 0.0  # exact zero, whatever the rounding of r - mean
    if zero_truncated and truncated is not None:
        adv = adv.masked_fill(truncated.to(torch.bool), 0.0)
    return GroupAdvantages(
        advantages=adv.to(torch.float32),
        group_mean=mean.to(torch.float32),
        group_std=std.to(torch.float32),
        zero_advantage=(adv == 0).all(dim=1),
        equal_rewards=equal,
    )


def truncated_mask(finish_reasons: Sequence[str], group_size: int) -> torch.Tensor:
    """``[num_groups, group_size]`` bool from vLLM finish reasons in group-major order ("length" = cut)."""
    if len(finish_reasons) % group_size:
        raise ValueError(f"{len(finish_reasons)} finish reasons do not fill groups of {group_size}")
    flags = torch.tensor([reason == "length" for reason in finish_reasons], dtype=torch.bool)
    return flags.reshape(-1, group_size)


ESTIMATORS = {"grpo": grpo_advantages}
"""``algorithm.advantage_estimator`` -> the function that forms advantages (config.algorithm.ADVANTAGE_ESTIMATORS
lists the same names; tests/algorithm pins that they agree)."""
