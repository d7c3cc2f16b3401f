"""Stable prompt identity for sampler and History Resampling state.

Samplers work on prompt numbers (positions in the trainer's prompt table), which change when a data file is
reordered or edited. Their checkpointed state is therefore keyed by each prompt's *key*, a hash of its content
(``srpo_mcore/train/prompts.py``, ``prompt_key``), and carries a readable *label* (the record id) per key for
error messages. On resume, :func:`check_same_prompts` compares the checkpoint's keys with the data set's: a
reordered data set resumes exactly; an edited, shortened or extended one fails, naming what changed.
"""

from __future__ import annotations

from collections.abc import Mapping


def _first(labels: list[str]) -> str:
    return sorted(labels)[0]


def n_prompts(n: int) -> str:
    return f"{n} prompt" + ("" if n == 1 else "s")


def data_change(saved: Mapping[str, str], current: Mapping[str, str], state: str) -> str | None:
    """What differs between the checkpoint's prompts and the data set's (``key -> label`` each), or None.

    A label present on both sides under different keys is an *edited* prompt; the rest are removed / added."""
    removed = {k: v for k, v in saved.items() if k not in current}
    added = {k: v for k, v in current.items() if k not in saved}
    if not removed and not added:
        return None
    edited = sorted(set(removed.values()) & set(added.values()))
    removed_only = [v for v in removed.values() if v not in edited]
    added_only = [v for v in added.values() if v not in edited]
    parts = []
    if edited:
        parts.append(f"{n_prompts(len(edited))} of the checkpoint's {state} state changed content: first: {edited[0]}")
    if removed_only:
        parts.append(f"{n_prompts(len(removed_only))} in the checkpoint's {state} state not in the data set: "
                     f"first: {_first(removed_only)}")
    if added_only:
        parts.append(f"{n_prompts(len(added_only))} of the data set not in the checkpoint's {state} state: "
                     f"first: {_first(added_only)}")
    return ("; ".join(parts) + f" (checkpoint: {len(saved)} prompts, data set: {len(current)}). The state is keyed "
            "by prompt content, so a reordered data set resumes; resume with the same data set, or start a new "
            "train.run_dir")


def check_same_prompts(saved: Mapping[str, str], current: Mapping[str, str], state: str) -> None:
    """Raise ``ValueError`` naming what changed unless both sides hold the same prompt keys."""
    change = data_change(saved, current, state)
    if change is not None:
        raise ValueError(change)
