"""SRPO's two-stage schedule: stage 1 trains on math only, stage 2 on math + code.

Stage 1 builds long, careful reasoning on hard math; stage 2 adds code while keeping that reasoning. The
switch happens after the step that satisfies either rule (whichever comes first):

* by step: the next step is ``switch_step`` (the first step of stage 2, counted from 0);
* by plateau: over the stage-1 *probe scores* seen so far, the mean of the last ``plateau_window`` beats the
  mean of the ``plateau_window`` before by less than ``plateau_min_improvement`` (and at least
  ``min_stage1_steps`` stage-1 steps have run).

The probe score is the math pass@1 of the trainer's periodic held-out evaluation (``data.eval_files``, every
``train.eval_interval`` steps): a fixed set of problems. It is deliberately not the training reward: under
History Resampling every epoch boundary removes the prompts the policy solved, so the training reward falls
there while the policy keeps improving, and a rule reading it would take History Resampling's own effect for
a plateau.

Trainer usage, once per step::

    counts = schedule.prompt_counts(prompts_per_step)   # DomainCounts(math=..., code=...)
    ...generate, score, train, evaluate every eval_interval steps...
    if (switch := schedule.observe(step, eval_math_pass_at_1_or_None)) is not None:
        log(switch.message())
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from srpo_mcore.config.algorithm import StageConfig


@dataclass(frozen=True)
class DomainCounts:
    """How many prompts of a step come from each data set."""

    math: int
    code: int


@dataclass(frozen=True)
class StageSwitch:
    """The event of entering stage 2, for the trainer to log (and keep in the checkpoint)."""

    after_step: int  # the last stage-1 step; stage 2 starts at after_step + 1
    reason: str  # "switch_step" or "plateau"
    previous_window_mean: float | None = None  # plateau only: mean probe score of the older window
    last_window_mean: float | None = None  # plateau only: mean probe score of the latest window

    def message(self) -> str:
        text = f"SRPO stage 2 (math + code) starts at step {self.after_step + 1}: "
        if self.reason == "plateau":
            return text + (
                f"held-out math pass@1 plateaued ({self.previous_window_mean:.4f} -> {self.last_window_mean:.4f})"
            )
        return text + "configured switch_step reached"


class TwoStageSchedule:
    """Which stage the run is in, when to move on, and how a stage splits a batch across domains."""

    def __init__(self, config: StageConfig):
        config.validate("stage")
        self.config = config
        self.stage = 1 if config.two_stage else 2
        self.switch: StageSwitch | None = None
        self._probe_scores: list[float] = []  # the last 2 x plateau_window stage-1 probe scores
        self._stage1_steps = 0

    def prompt_counts(self, batch_size: int) -> DomainCounts:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.stage == 1:
            return DomainCounts(math=batch_size, code=0)
        code = min(batch_size, math.floor(batch_size * self.config.stage2_code_fraction + 0.5))
        return DomainCounts(math=batch_size - code, code=code)

    def observe(self, step: int, probe_score: float | None = None) -> StageSwitch | None:
        """Record a finished step, with the probe score (held-out math pass@1) when the step ran an evaluation;
        returns the switch event if it happens now."""
        if self.stage == 2:
            return None
        self._stage1_steps += 1
        window = self.config.plateau_window
        if probe_score is not None:
            if not math.isfinite(probe_score):
                raise ValueError(f"step {step}: stage-1 probe score {probe_score} is not finite")
            if window > 0:
                self._probe_scores = (self._probe_scores + [float(probe_score)])[-2 * window :]
        switch_step = self.config.switch_step
        if switch_step is not None and step + 1 >= switch_step:
            return self._enter_stage2(StageSwitch(after_step=step, reason="switch_step"))
        if (
            probe_score is not None
            and window > 0
            and len(self._probe_scores) == 2 * window
            and self._stage1_steps >= self.config.min_stage1_steps
        ):
            previous = sum(self._probe_scores[:window]) / window
            last = sum(self._probe_scores[window:]) / window
            if last - previous < self.config.plateau_min_improvement:
                return self._enter_stage2(
                    StageSwitch(
                        after_step=step,
                        reason="plateau",
                        previous_window_mean=previous,
                        last_window_mean=last,
                    )
                )
        return None

    def _enter_stage2(self, switch: StageSwitch) -> StageSwitch:
        self.stage = 2
        self.switch = switch
        return switch

    def state_dict(self) -> dict:
        return {
            "stage": self.stage,
            "stage1_steps": self._stage1_steps,
            "probe_scores": list(self._probe_scores),
            "switch": asdict(self.switch) if self.switch else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.stage = int(state["stage"])
        self._stage1_steps = int(state["stage1_steps"])
        self._probe_scores = [float(r) for r in state["probe_scores"]]
        self.switch = StageSwitch(**state["switch"]) if state["switch"] else None
