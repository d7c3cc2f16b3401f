"""History Resampling (SRPO, arXiv 2504.14286 sec. 3): train only on prompts that still teach something.

During an epoch the per-sample correctness of every prompt's rollouts is recorded. At the epoch's end the
next epoch's prompt set is this epoch's set minus the prompts whose rollouts were *all correct*: those give
equal rewards, hence zero GRPO advantage, and are unlikely to become informative again. Prompts with mixed
outcomes stay, and so do prompts that were all wrong (they may become solvable and then carry signal).
Prompts drawn into the epoch but never scored ("unseen") stay as well: there is no evidence they are solved.
Dropping is cumulative: a prompt dropped once does not come back.

When every prompt is dropped, ``when_all_solved`` decides: ``"reset"`` starts again from the full prompt
set (the epoch's stats say ``reset_to_full_set``), ``"stop"`` leaves an empty set and the sampler reports
itself exhausted.

The state (active set, this epoch's tallies) is plain JSON keyed by each prompt's stable key (a content hash,
see :mod:`srpo_mcore.algorithm.prompt_identity`), not by its number: a reordered data set resumes exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from srpo_mcore.algorithm.prompt_identity import n_prompts
from srpo_mcore.config.algorithm import WHEN_ALL_SOLVED


@dataclass(frozen=True)
class EpochResampleStats:
    """What History Resampling decided at the end of ``epoch``. Counts are prompts, not samples."""

    epoch: int
    num_prompts: int  # prompts in the epoch just finished
    kept: int  # prompts in the next epoch (before any reset)
    dropped_all_correct: int
    all_wrong: int  # kept
    mixed: int  # kept
    unseen: int  # in the epoch but never scored; kept
    reset_to_full_set: bool  # nothing was left, so the next epoch uses every prompt again

    def as_metrics(self, prefix: str = "history_resampling/") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}


class HistoryResampler:
    """The set of prompt ids still in play, and this epoch's outcome tallies per prompt."""

    def __init__(self, prompt_ids: Iterable[int], when_all_solved: str = "reset", keys: Mapping[int, str] | None = None):
        """``keys``: each prompt number's stable key (default: the number itself, as text). The prompt sets are
        kept in key order, so the epoch shuffles do not depend on where a prompt sits in the table."""
        if when_all_solved not in WHEN_ALL_SOLVED:
            raise ValueError(f"when_all_solved={when_all_solved!r}, expected one of {WHEN_ALL_SOLVED}")
        ids = [int(p) for p in prompt_ids]
        if len(set(ids)) != len(ids):
            raise ValueError("prompt ids must be unique")
        self._key = {p: str(keys[p]) for p in ids} if keys is not None else {p: str(p) for p in ids}
        if len(set(self._key.values())) != len(ids):
            raise ValueError("prompt keys must be unique")
        self._id_of = {k: p for p, k in self._key.items()}
        self._all_ids = sorted(ids, key=self._key.__getitem__) if keys is not None else sorted(ids)
        self.when_all_solved = when_all_solved
        self._active: list[int] = list(self._all_ids)
        self._active_set = set(self._active)
        self._tally: dict[int, list[int]] = {}  # prompt id -> [num_correct, num_samples] this epoch

    @property
    def active_prompt_ids(self) -> list[int]:
        """This epoch's prompt ids, in key order (the sampler shuffles them)."""
        return list(self._active)

    def record(self, prompt_id: int, correct: Sequence[bool | int]) -> None:
        """Add one prompt's rollout outcomes (1/True = correct). May be called several times per epoch."""
        if prompt_id not in self._active_set:
            raise ValueError(f"prompt {prompt_id} is not in this epoch's prompt set")
        if not correct:
            raise ValueError(f"prompt {prompt_id}: no outcomes given")
        if any(c not in (0, 1) for c in correct):
            raise ValueError(f"prompt {prompt_id}: outcomes must be 0/1 or bools, got {list(correct)}")
        tally = self._tally.setdefault(int(prompt_id), [0, 0])
        tally[0] += sum(int(c) for c in correct)
        tally[1] += len(correct)

    def finish_epoch(self, epoch: int) -> EpochResampleStats:
        """Build the next epoch's prompt set from this epoch's tallies; clear the tallies."""
        kept, dropped, all_wrong, mixed, unseen = [], 0, 0, 0, 0
        for pid in self._active:
            tally = self._tally.get(pid)
            if tally is None:
                unseen += 1
            elif tally[0] == tally[1]:
                dropped += 1
                continue
            elif tally[0] == 0:
                all_wrong += 1
            else:
                mixed += 1
            kept.append(pid)
        reset = not kept and self.when_all_solved == "reset"
        stats = EpochResampleStats(
            epoch=epoch,
            num_prompts=len(self._active),
            kept=len(kept),
            dropped_all_correct=dropped,
            all_wrong=all_wrong,
            mixed=mixed,
            unseen=unseen,
            reset_to_full_set=reset,
        )
        self._active = list(self._all_ids) if reset else kept
        self._active_set = set(self._active)
        self._tally = {}
        return stats

    def state_dict(self) -> dict:
        key = self._key
        return {
            "num_prompts": len(self._all_ids),
            "when_all_solved": self.when_all_solved,
            "active": [key[p] for p in self._active],
            "tally": [[key[pid], c, n] for pid, (c, n) in sorted(self._tally.items(), key=lambda t: key[t[0]])],
        }

    def load_state_dict(self, state: dict) -> None:
        saved_keys = set(state["active"]) | {k for k, _, _ in state["tally"]}
        unknown = sorted(saved_keys - set(self._id_of))
        if unknown:
            raise ValueError(f"{n_prompts(len(unknown))} in the checkpoint's History Resampling state not in the data "
                             f"set: first: {unknown[0]}; resume with the same data set")
        if state["num_prompts"] != len(self._all_ids):
            raise ValueError(
                f"checkpoint was taken over {state['num_prompts']} prompts, this run has "
                f"{len(self._all_ids)}: History Resampling state does not match the data set"
            )
        self.when_all_solved = state["when_all_solved"]
        self._active = [self._id_of[k] for k in state["active"]]
        self._active_set = set(self._active)
        self._tally = {self._id_of[k]: [int(c), int(n)] for k, c, n in state["tally"]}
