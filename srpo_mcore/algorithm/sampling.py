"""Which prompts a step trains on: vanilla GRPO, SRPO's History Resampling, or DAPO's dynamic sampling.

Every strategy walks epochs. An epoch is a shuffle of that epoch's prompt set (all prompts, or for History
Resampling the ones still in play), seeded by ``(seed, epoch)``; a sampler's position is ``(epoch, index in
that order)``. One draw never crosses an epoch boundary, so the last batch of an epoch may be short: History
Resampling must see every outcome of an epoch before it builds the next one. The next epoch starts on the
first draw after the last prompt was handed out, so a state saved exactly at an epoch's end resumes into
the next epoch.

A step assembles its groups through :class:`BatchAssembly`, the same loop for every strategy::

    batch = sampler.begin_batch(prompts_per_step)
    while prompt_ids := batch.next_request():
        outcomes = score(generate(prompt_ids))       # list[GroupOutcome]
        keep = batch.add(outcomes)                    # train on the groups where keep[i] is True

Vanilla and History Resampling take one round and keep every group (History Resampling records the
outcomes). Dynamic sampling (DAPO) draws ``ceil(missing x oversample_factor)`` prompts per round, drops
groups whose rewards are all equal, and goes on until the batch is full or ``max_rounds`` rounds are spent;
surplus groups of the last round are dropped (their prompts count as used).

Exact resume: checkpoint between steps (not inside an assembly) with :meth:`PromptSampler.state_dict`; a
sampler built over the same prompts and loaded with it continues with the very next prompt. Prompts are known
to the state by their stable keys (content hashes, :mod:`srpo_mcore.algorithm.prompt_identity`): the epoch
orders are shuffles of the prompts in key order, so a reordered data set resumes exactly, and a changed one
fails naming the prompts that changed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from srpo_mcore.algorithm.history_resampling import EpochResampleStats, HistoryResampler
from srpo_mcore.algorithm.prompt_identity import check_same_prompts
from srpo_mcore.config.algorithm import SamplingConfig


@dataclass(frozen=True)
class GroupOutcome:
    """The scored rollouts of one prompt: a reward and a correctness flag per response."""

    prompt_id: int
    rewards: tuple[float, ...]
    correct: tuple[bool, ...]

    @property
    def equal_rewards(self) -> bool:
        """True when the group's GRPO advantages are all zero."""
        return max(self.rewards) == min(self.rewards)


@dataclass(frozen=True)
class BatchAssemblyStats:
    rounds: int
    prompts_drawn: int
    groups_kept: int
    groups_dropped_equal_rewards: int
    groups_dropped_surplus: int
    short: bool  # fewer groups kept than asked for (epoch end, sampler exhausted, or max_rounds spent)


def shuffled(prompt_ids: Sequence[int], seed: int, epoch: int) -> list[int]:
    """The order of one epoch: a permutation seeded by ``(seed, epoch)`` alone."""
    perm = np.random.default_rng([seed, epoch]).permutation(len(prompt_ids))
    return [prompt_ids[i] for i in perm]


class PromptSampler:
    """Epochs of shuffled prompt orders. Subclasses choose each epoch's prompt set and what a step keeps;
    this base class serves every prompt once per epoch and keeps every group."""

    strategy = "vanilla"
    state_name = "sampler"  # how errors name this sampler's checkpointed state

    def __init__(self, prompt_ids: Sequence[int], seed: int, keys: Sequence[str] | None = None,
                 labels: Sequence[str] | None = None):
        """``keys``: each prompt's stable key, parallel to ``prompt_ids`` (default: the number as text);
        ``labels``: readable names for errors (default: the keys)."""
        ids = [int(p) for p in prompt_ids]
        if not ids:
            raise ValueError("a prompt sampler needs at least one prompt")
        if len(set(ids)) != len(ids):
            raise ValueError("prompt ids must be unique")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        texts = [str(k) for k in keys] if keys is not None else [str(p) for p in ids]
        if len(texts) != len(ids) or (labels is not None and len(labels) != len(ids)):
            raise ValueError(f"{len(ids)} prompt ids need as many keys and labels")
        if len(set(texts)) != len(texts):
            raise ValueError("prompt keys must be unique")
        self.keys = dict(zip(ids, texts))
        self.labels = dict(zip(ids, labels if labels is not None else texts))
        self.prompt_ids = sorted(ids, key=self.keys.__getitem__) if keys is not None else sorted(ids)
        self.seed = int(seed)
        self._epoch = 0
        self._position = 0
        self._order: list[int] | None = None

    # ------------------------------------------------------------------ position

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def position(self) -> int:
        """How many prompts of this epoch's order have been handed out."""
        return self._position

    @property
    def epoch_order(self) -> list[int]:
        """This epoch's prompt order (a copy)."""
        return list(self._current_order())

    @property
    def exhausted(self) -> bool:
        """No prompt is left to draw, ever (History Resampling with ``when_all_solved="stop"``)."""
        return not self._current_order()

    def next_prompts(self, n: int) -> list[int]:
        """Up to ``n`` prompt ids; fewer at the end of an epoch, none only when exhausted."""
        if n < 1:
            raise ValueError(f"asked for {n} prompts")
        order = self._current_order()
        if order and self._position == len(order):
            self._finish_epoch()
            self._epoch += 1
            self._position = 0
            self._order = None
            order = self._current_order()
        drawn = order[self._position : self._position + n]
        self._position += len(drawn)
        return drawn

    def record_outcomes(self, outcomes: Sequence[GroupOutcome]) -> None:
        """Tell the sampler how the drawn prompts went (only History Resampling listens)."""

    def begin_batch(self, num_groups: int) -> BatchAssembly:
        return BatchAssembly(self, num_groups)

    def metrics(self, prefix: str = "sampling/") -> dict[str, float]:
        order = self._current_order()
        return {
            f"{prefix}epoch": float(self._epoch),
            f"{prefix}epoch_progress": self._position / len(order) if order else 1.0,
            f"{prefix}epoch_prompts": float(len(order)),
        }

    # ------------------------------------------------------------------ per-strategy hooks

    def _epoch_prompt_ids(self) -> list[int]:
        """Sorted prompt ids of the current epoch."""
        return self.prompt_ids

    def _finish_epoch(self) -> None:
        """Called once the current epoch's last prompt was handed out, before the next draw."""

    def _current_order(self) -> list[int]:
        if self._order is None:
            self._order = shuffled(self._epoch_prompt_ids(), self.seed, self._epoch)
        return self._order

    # ------------------------------------------------------------------ checkpoint

    def state_dict(self) -> dict:
        """JSON-friendly: plain ints, lists and dicts."""
        return {
            "strategy": self.strategy,
            "seed": self.seed,
            "num_prompts": len(self.prompt_ids),
            "epoch": self._epoch,
            "position": self._position,
            "prompts": {self.keys[p]: self.labels[p] for p in self.prompt_ids},  # key -> label
        }

    def load_state_dict(self, state: dict) -> None:
        if state["strategy"] != self.strategy:
            raise ValueError(
                f"checkpoint was taken with sampling strategy {state['strategy']!r}, this run uses "
                f"{self.strategy!r}; resume with the same strategy"
            )
        check_same_prompts(state["prompts"], {self.keys[p]: self.labels[p] for p in self.prompt_ids},
                           self.state_name)
        self.seed = int(state["seed"])
        self._epoch = int(state["epoch"])
        self._order = None
        self._load_strategy_state(state)
        position = int(state["position"])
        if not 0 <= position <= len(self._current_order()):
            raise ValueError(
                f"checkpoint position {position} is outside epoch {self._epoch}'s "
                f"{len(self._current_order())} prompts"
            )
        self._position = position

    def _load_strategy_state(self, state: dict) -> None:
        pass


class VanillaSampler(PromptSampler):
    """Vanilla GRPO: every prompt once per epoch, in a fresh shuffle each epoch; every group is trained on."""

    strategy = "vanilla"


class HistoryResamplingSampler(PromptSampler):
    """SRPO: each epoch trains on the prompts whose rollouts were not all correct in the epoch before."""

    strategy = "history_resampling"
    state_name = "History Resampling"

    def __init__(self, prompt_ids: Sequence[int], seed: int, when_all_solved: str = "reset",
                 keys: Sequence[str] | None = None, labels: Sequence[str] | None = None):
        super().__init__(prompt_ids, seed, keys, labels)
        self.history = HistoryResampler(self.prompt_ids, when_all_solved, self.keys if keys is not None else None)
        self.last_resample: EpochResampleStats | None = None
        self._index_in_order: dict[int, int] | None = None

    def record_outcomes(self, outcomes: Sequence[GroupOutcome]) -> None:
        if self._index_in_order is None:
            self._index_in_order = {pid: i for i, pid in enumerate(self._current_order())}
        for outcome in outcomes:
            index = self._index_in_order.get(outcome.prompt_id)
            if index is None or index >= self._position:
                raise ValueError(
                    f"prompt {outcome.prompt_id} was not drawn in epoch {self._epoch}: record a batch's "
                    "outcomes before drawing the next batch"
                )
            self.history.record(outcome.prompt_id, outcome.correct)

    def metrics(self, prefix: str = "sampling/") -> dict[str, float]:
        metrics = super().metrics(prefix)
        if self.last_resample is not None:
            metrics.update(self.last_resample.as_metrics(f"{prefix}history_resampling/"))
        return metrics

    def _epoch_prompt_ids(self) -> list[int]:
        return self.history.active_prompt_ids

    def _finish_epoch(self) -> None:
        self.last_resample = self.history.finish_epoch(self._epoch)
        self._index_in_order = None

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["history"] = self.history.state_dict()
        state["last_resample"] = asdict(self.last_resample) if self.last_resample else None
        return state

    def _load_strategy_state(self, state: dict) -> None:
        self.history.load_state_dict(state["history"])
        last = state["last_resample"]
        self.last_resample = EpochResampleStats(**last) if last else None
        self._index_in_order = None


class DynamicSampler(VanillaSampler):
    """DAPO dynamic sampling: vanilla epochs; a step over-samples and keeps groups with unequal rewards."""

    strategy = "dynamic"

    def __init__(
        self, prompt_ids: Sequence[int], seed: int, oversample_factor: float = 1.5, max_rounds: int = 4,
        keys: Sequence[str] | None = None, labels: Sequence[str] | None = None,
    ):
        super().__init__(prompt_ids, seed, keys, labels)
        if oversample_factor < 1.0 or max_rounds < 1:
            raise ValueError(
                f"need oversample_factor >= 1 and max_rounds >= 1, got {oversample_factor}, {max_rounds}"
            )
        self.oversample_factor = oversample_factor
        self.max_rounds = max_rounds

    def begin_batch(self, num_groups: int) -> BatchAssembly:
        return BatchAssembly(
            self,
            num_groups,
            drop_equal_rewards=True,
            oversample_factor=self.oversample_factor,
            max_rounds=self.max_rounds,
        )


class BatchAssembly:
    """One step's groups, gathered over one or more draw -> generate -> score rounds."""

    def __init__(
        self,
        sampler: PromptSampler,
        num_groups: int,
        *,
        drop_equal_rewards: bool = False,
        oversample_factor: float = 1.0,
        max_rounds: int = 1,
    ):
        if num_groups < 1:
            raise ValueError(f"a batch needs at least one group, asked for {num_groups}")
        self.sampler = sampler
        self.num_groups = num_groups
        self.drop_equal_rewards = drop_equal_rewards
        self.oversample_factor = oversample_factor
        self.max_rounds = max_rounds
        self.kept: list[GroupOutcome] = []
        self._pending: list[int] | None = None
        self._rounds = self._drawn = self._dropped_equal = self._dropped_surplus = 0
        self._out_of_prompts = False

    @property
    def done(self) -> bool:
        return self._pending is None and (
            len(self.kept) >= self.num_groups or self._rounds >= self.max_rounds or self._out_of_prompts
        )

    def next_request(self) -> list[int]:
        """Prompt ids to generate for next; empty once the batch is complete."""
        if self._pending is not None:
            raise RuntimeError("add() the outcomes of the previous request before asking for more prompts")
        if self.done:
            return []
        missing = self.num_groups - len(self.kept)
        drawn = self.sampler.next_prompts(math.ceil(missing * self.oversample_factor))
        if not drawn:
            self._out_of_prompts = True
            return []
        self._rounds += 1
        self._drawn += len(drawn)
        self._pending = drawn
        return list(drawn)

    def add(self, outcomes: Sequence[GroupOutcome]) -> list[bool]:
        """Outcomes of the last request (any order); returns per outcome whether the batch keeps it."""
        if self._pending is None:
            raise RuntimeError("add() called without an open request")
        if sorted(o.prompt_id for o in outcomes) != sorted(self._pending):
            raise ValueError(
                f"outcomes are for prompts {sorted(o.prompt_id for o in outcomes)}, the request was "
                f"for {sorted(self._pending)}"
            )
        self.sampler.record_outcomes(outcomes)
        self._pending = None
        keep = []
        for outcome in outcomes:
            if self.drop_equal_rewards and outcome.equal_rewards:
                self._dropped_equal += 1
                keep.append(False)
            elif len(self.kept) >= self.num_groups:
                self._dropped_surplus += 1
                keep.append(False)
            else:
                self.kept.append(outcome)
                keep.append(True)
        return keep

    @property
    def stats(self) -> BatchAssemblyStats:
        return BatchAssemblyStats(
            rounds=self._rounds,
            prompts_drawn=self._drawn,
            groups_kept=len(self.kept),
            groups_dropped_equal_rewards=self._dropped_equal,
            groups_dropped_surplus=self._dropped_surplus,
            short=len(self.kept) < self.num_groups,
        )


def build_prompt_sampler(config: SamplingConfig, prompt_ids: Sequence[int], seed: int,
                         keys: Sequence[str] | None = None, labels: Sequence[str] | None = None) -> PromptSampler:
    """The sampler ``config.strategy`` names, over ``prompt_ids`` (with their stable ``keys`` and readable
    ``labels``, parallel to them), shuffled from ``seed`` (the run's seed)."""
    if config.strategy == "vanilla":
        return VanillaSampler(prompt_ids, seed, keys, labels)
    if config.strategy == "history_resampling":
        return HistoryResamplingSampler(prompt_ids, seed, config.when_all_solved, keys, labels)
    if config.strategy == "dynamic":
        return DynamicSampler(prompt_ids, seed, config.dynamic_oversample_factor, config.dynamic_max_rounds,
                              keys, labels)
    raise ValueError(f"unknown sampling strategy {config.strategy!r}")
