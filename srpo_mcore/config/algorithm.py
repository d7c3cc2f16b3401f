"""Algorithm sections: advantages and loss, prompt sampling, the two-stage schedule, reflection statistics.

Defaults follow the SRPO paper (arXiv 2504.14286): GRPO group advantages, token-level loss, no KL term,
History Resampling, stage 1 on math then stage 2 on math + code.
"""

from __future__ import annotations

from dataclasses import dataclass

from srpo_mcore.config.base import check, check_choice, check_positive, option

ADVANTAGE_ESTIMATORS = ("grpo",)
LOSS_AGGREGATIONS = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean")
SAMPLING_STRATEGIES = ("history_resampling", "vanilla", "dynamic")
WHEN_ALL_SOLVED = ("reset", "stop")


@dataclass
class AlgorithmConfig:
    """GRPO advantages and the clipped policy-gradient loss."""

    advantage_estimator: str = option("grpo", "How advantages are formed; 'grpo' = group-normalised rewards.")
    normalize_advantage_by_std: bool = option(
        True, "Divide (reward - group mean) by (group std + advantage_eps); false keeps the raw difference."
    )
    advantage_eps: float = option(1e-6, "Added to the group std before dividing.")
    overlong_zero_advantage: bool = option(
        True, "Responses cut at the length limit (finish_reason 'length') get advantage 0 (no gradient)."
    )
    loss_aggregation: str = option(
        "token-mean",
        "token-mean (SRPO: every token weighs the same), seq-mean-token-sum or seq-mean-token-mean.",
    )
    clip_eps_low: float = option(0.2, "PPO ratio clip below: ratio >= 1 - clip_eps_low.")
    clip_eps_high: float = option(
        0.2, "PPO ratio clip above: ratio <= 1 + clip_eps_high (0.2 = symmetric GRPO as in SRPO; DAPO's "
        "clip-higher uses 0.28)."
    )
    dual_clip_c: float | None = option(
        None, "Dual-clip bound for negative advantages (loss <= c * |A|); must exceed 1; null disables."
    )
    kl_coef: float = option(0.0, "Weight of the KL penalty to the reference policy; SRPO uses none (0).")
    entropy_coef: float = option(0.0, "Weight of the entropy bonus (0 disables).")
    tis_cap: float | None = option(
        None, "Truncated importance sampling: cap on the trainer/rollout probability ratio; null disables."
    )

    def validate(self, prefix: str = "algorithm") -> None:
        check_choice(self.advantage_estimator, ADVANTAGE_ESTIMATORS, f"{prefix}.advantage_estimator")
        check_positive(self.advantage_eps, f"{prefix}.advantage_eps", allow_zero=True)
        check_choice(self.loss_aggregation, LOSS_AGGREGATIONS, f"{prefix}.loss_aggregation")
        check_positive(self.clip_eps_low, f"{prefix}.clip_eps_low")
        check(self.clip_eps_low < 1.0, f"{prefix}.clip_eps_low", f"must be < 1, got {self.clip_eps_low}")
        check_positive(self.clip_eps_high, f"{prefix}.clip_eps_high")
        if self.dual_clip_c is not None:
            check(
                self.dual_clip_c > 1.0,
                f"{prefix}.dual_clip_c",
                f"must be > 1 (e.g. 3.0) or null to disable, got {self.dual_clip_c}",
            )
        check_positive(self.kl_coef, f"{prefix}.kl_coef", allow_zero=True)
        check_positive(self.entropy_coef, f"{prefix}.entropy_coef", allow_zero=True)
        if self.tis_cap is not None:
            check(
                self.tis_cap >= 1.0,
                f"{prefix}.tis_cap",
                f"must be >= 1 (e.g. 2.0) or null to disable, got {self.tis_cap}",
            )


@dataclass
class SamplingConfig:
    """Which prompts each step trains on. The shuffle seed is the run's seed (train.seed)."""

    strategy: str = option(
        "history_resampling",
        "history_resampling (SRPO: drop prompts whose rollouts were all correct last epoch), vanilla (every "
        "prompt each epoch) or dynamic (DAPO: over-sample, drop groups with equal rewards, refill).",
    )
    when_all_solved: str = option(
        "reset",
        "History Resampling when no prompt is left for the next epoch: reset (start again from the "
        "full set) or stop (the sampler is exhausted and training ends).",
    )
    dynamic_oversample_factor: float = option(
        1.5, "Dynamic sampling: prompts drawn per round = factor x groups still missing."
    )
    dynamic_max_rounds: int = option(
        4, "Dynamic sampling: generation rounds per step before training on a short batch."
    )

    def validate(self, prefix: str = "sampling") -> None:
        check_choice(self.strategy, SAMPLING_STRATEGIES, f"{prefix}.strategy")
        check_choice(self.when_all_solved, WHEN_ALL_SOLVED, f"{prefix}.when_all_solved")
        check(
            self.dynamic_oversample_factor >= 1.0,
            f"{prefix}.dynamic_oversample_factor",
            f"must be >= 1, got {self.dynamic_oversample_factor}",
        )
        check_positive(self.dynamic_max_rounds, f"{prefix}.dynamic_max_rounds")


@dataclass
class StageConfig:
    """The two-stage schedule: stage 1 math only, stage 2 math + code."""

    two_stage: bool = option(
        False, "Start on math only and switch to math + code later (the SRPO recipe; needs switch_step or "
        "plateau_window); false trains on one mixture throughout."
    )
    switch_step: int | None = option(
        None, "First step of stage 2 (counted from 0); null leaves the switch to the plateau rule."
    )
    plateau_window: int = option(
        0,
        "Switch when the held-out math pass@1 (the periodic evaluation on data.eval_files, every "
        "train.eval_interval steps) averaged over the last N evaluations beats that of the N before by less "
        "than plateau_min_improvement; 0 disables. Not the training reward: History Resampling lowers it at "
        "every epoch boundary by dropping solved prompts.",
    )
    plateau_min_improvement: float = option(
        0.005, "Smallest window-to-window gain in held-out math pass@1 that is not a plateau."
    )
    min_stage1_steps: int = option(0, "The plateau rule cannot switch before this many stage-1 steps.")
    stage2_code_fraction: float = option(
        0.5, "Share of each stage-2 batch's prompts drawn from the code set."
    )

    def validate(self, prefix: str = "stage") -> None:
        if self.switch_step is not None:
            check_positive(self.switch_step, f"{prefix}.switch_step")
        check_positive(self.plateau_window, f"{prefix}.plateau_window", allow_zero=True)
        check_positive(self.min_stage1_steps, f"{prefix}.min_stage1_steps", allow_zero=True)
        if self.two_stage:
            check(
                self.switch_step is not None or self.plateau_window > 0,
                f"{prefix}.switch_step",
                "stage 2 would never start: set switch_step or plateau_window > 0 (or two_stage: false)",
            )
        check(
            0.0 < self.stage2_code_fraction < 1.0,
            f"{prefix}.stage2_code_fraction",
            f"must be in (0, 1), got {self.stage2_code_fraction}",
        )


DEFAULT_RECHECK_PHRASES = [
    "recheck",
    "re-check",
    "double-check",
    "double check",
    "check again",
    "let me check",
    "let's check",
    "let me verify",
    "let's verify",
    "re-examine",
    "re-evaluate",
    "verify",
]
DEFAULT_HESITATION_PHRASES = [
    "wait",
    "hmm",
    "hold on",
    "hang on",
    "not sure",
    "on second thought",
    "i made a mistake",
]
DEFAULT_EXPLORATION_PHRASES = [
    "alternatively",
    "another approach",
    "another way",
    "another method",
    "a different approach",
    "let me try",
    "let's try",
    "on the other hand",
    "what if",
]


@dataclass
class ReflectionConfig:
    """Phrases that mark reflective reasoning (the paper's recheck / hesitation / exploration analysis).

    Matching is case-insensitive, on whole words, with any run of whitespace between a phrase's words.
    """

    recheck_phrases: list[str] = option(
        factory=lambda: list(DEFAULT_RECHECK_PHRASES), help="Phrases of re-checking a result."
    )
    hesitation_phrases: list[str] = option(
        factory=lambda: list(DEFAULT_HESITATION_PHRASES), help="Phrases of hesitating or doubting."
    )
    exploration_phrases: list[str] = option(
        factory=lambda: list(DEFAULT_EXPLORATION_PHRASES), help="Phrases of trying another route."
    )

    def categories(self) -> dict[str, list[str]]:
        return {
            "recheck": self.recheck_phrases,
            "hesitation": self.hesitation_phrases,
            "exploration": self.exploration_phrases,
        }

    def validate(self, prefix: str = "reflection") -> None:
        for name, phrases in self.categories().items():
            key = f"{prefix}.{name}_phrases"
            check(len(phrases) > 0, key, "needs at least one phrase")
            for i, phrase in enumerate(phrases):
                check(
                    isinstance(phrase, str) and phrase.strip() != "",
                    f"{key}[{i}]",
                    f"must be a non-empty string, got {phrase!r}",
                )
