"""Reflection-pattern statistics (SRPO paper, "reflective behaviour" analysis).

Per batch of responses and per category (recheck, hesitation, exploration): the share of responses that
contain at least one of the category's phrases, and the mean length of those responses. Phrases match
case-insensitively on word boundaries ("wait" does not match "awaited"); whitespace inside a phrase matches
any run of whitespace, and an apostrophe matches both ' and the typographic ’.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from srpo_mcore.config.algorithm import ReflectionConfig


@dataclass(frozen=True)
class ReflectionCategoryStats:
    responses_with_pattern: int
    frequency: float  # responses_with_pattern / num_responses
    mean_length: float  # mean length of the responses with the pattern; nan when there are none


@dataclass(frozen=True)
class ReflectionStats:
    num_responses: int
    mean_length: float  # over all responses; nan for an empty batch
    categories: dict[str, ReflectionCategoryStats]

    def as_metrics(self, prefix: str = "reflection/") -> dict[str, float]:
        """Flat metrics; a mean over no responses (nan) is left out."""
        metrics = {f"{prefix}mean_length": self.mean_length}
        for name, stats in self.categories.items():
            metrics[f"{prefix}{name}_frequency"] = stats.frequency
            metrics[f"{prefix}{name}_mean_length"] = stats.mean_length
        return {k: v for k, v in metrics.items() if not math.isnan(v)}


def phrase_pattern(phrases: Sequence[str]) -> re.Pattern[str]:
    """One case-insensitive regex matching any of ``phrases`` as whole words."""
    alternatives = []
    for phrase in sorted({p.strip().lower() for p in phrases}, key=len, reverse=True):
        words = [re.escape(w).replace("'", "['’]") for w in phrase.split()]
        alternatives.append(r"\s+".join(words))
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


class ReflectionCounter:
    """Counts reflection patterns in batches of responses, one compiled regex per category."""

    def __init__(self, config: ReflectionConfig | None = None):
        config = config or ReflectionConfig()
        config.validate("reflection")
        self.patterns = {name: phrase_pattern(phrases) for name, phrases in config.categories().items()}

    def measure(self, responses: Sequence[str], lengths: Sequence[int] | None = None) -> ReflectionStats:
        """Statistics of one batch. ``lengths`` are response lengths in tokens; by default characters."""
        if lengths is None:
            lengths = [len(text) for text in responses]
        if len(lengths) != len(responses):
            raise ValueError(f"{len(responses)} responses but {len(lengths)} lengths")
        n = len(responses)
        categories = {}
        for name, pattern in self.patterns.items():
            hits = [length for text, length in zip(responses, lengths) if pattern.search(text)]
            categories[name] = ReflectionCategoryStats(
                responses_with_pattern=len(hits),
                frequency=len(hits) / n if n else 0.0,
                mean_length=sum(hits) / len(hits) if hits else math.nan,
            )
        return ReflectionStats(
            num_responses=n, mean_length=sum(lengths) / n if n else math.nan, categories=categories
        )
