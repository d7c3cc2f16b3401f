import math
import random

import pytest

from srpo_mcore.algorithm.reflection import ReflectionCounter
from srpo_mcore.config.algorithm import ReflectionConfig
from srpo_mcore.config.base import ConfigError

RESPONSES = [
    "Wait, let me recheck the sum: 3 + 4 = 7.",  # hesitation + recheck
    "Alternatively, we could factor the polynomial.",  # exploration
    "The result was awaited; we proceed without checking.",  # nothing: "awaited", "checking"
    "HMM. Let\u2019s try   another way.",  # hesitation + exploration (typographic apostrophe, spaces)
    "I will double\ncheck this.",  # recheck across a newline
]
LENGTHS = [10, 20, 30, 40, 50]


def test_hand_counted_batch():
    stats = ReflectionCounter().measure(RESPONSES, LENGTHS)
    assert stats.num_responses == 5 and stats.mean_length == 30
    recheck, hesitation, exploration = (stats.categories[k] for k in ("recheck", "hesitation", "exploration"))
    assert (recheck.responses_with_pattern, recheck.frequency, recheck.mean_length) == (2, 0.4, 30)
    assert (hesitation.responses_with_pattern, hesitation.frequency, hesitation.mean_length) == (2, 0.4, 25)
    assert (exploration.responses_with_pattern, exploration.frequency, exploration.mean_length) == (
        2,
        0.4,
        30,
    )
    metrics = stats.as_metrics()
    assert (
        metrics["reflection/hesitation_frequency"] == 0.4 and metrics["reflection/recheck_mean_length"] == 30
    )


def test_default_length_is_characters_and_empty_categories_are_nan():
    stats = ReflectionCounter().measure(["plain text", "wait"])
    assert stats.mean_length == 7
    assert stats.categories["hesitation"].mean_length == 4
    assert math.isnan(stats.categories["exploration"].mean_length)
    assert "reflection/exploration_mean_length" not in stats.as_metrics()


def test_empty_batch():
    stats = ReflectionCounter().measure([])
    assert stats.num_responses == 0 and stats.categories["recheck"].frequency == 0.0
    assert stats.as_metrics() == {
        "reflection/recheck_frequency": 0.0,
        "reflection/hesitation_frequency": 0.0,
        "reflection/exploration_frequency": 0.0,
    }


def test_custom_phrases_case_insensitive_whole_words():
    config = ReflectionConfig(
        recheck_phrases=["sanity check"], hesitation_phrases=["um"], exploration_phrases=["plan b"]
    )
    stats = ReflectionCounter(config).measure(["Sanity  CHECK done", "umbrella", "um, plan B!"])
    assert [stats.categories[k].responses_with_pattern for k in ("recheck", "hesitation", "exploration")] == [
        1,
        1,
        1,
    ]


def words_reference(text: str, phrases: list[str]) -> bool:
    """Brute force for texts of space-separated tokens (punctuation standing alone): is some phrase's word
    sequence a contiguous run of the text's tokens?"""
    words = text.lower().split()
    for phrase in phrases:
        target = phrase.lower().split()
        if any(words[i : i + len(target)] == target for i in range(len(words) - len(target) + 1)):
            return True
    return False


def test_matches_brute_force_word_reference():
    phrases = ["wait", "hold on", "let me try", "another way"]
    counter = ReflectionCounter(
        ReflectionConfig(recheck_phrases=["verify"], hesitation_phrases=phrases, exploration_phrases=["zzz"])
    )
    vocabulary = [
        "wait",
        "waiting",
        "await",
        "hold",
        "on",
        "one",
        "let",
        "me",
        "try",
        "trying",
        "another",
        "way",
        "ways",
        "Wait",
        "ON",
        ",",
        ".",
        "x",
    ]
    rng = random.Random(0)
    texts = [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 12))) for _ in range(300)]
    stats = counter.measure(texts)
    expected = sum(words_reference(t, phrases) for t in texts)
    assert 0 < expected < len(texts)
    assert stats.categories["hesitation"].responses_with_pattern == expected


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="lengths"):
        ReflectionCounter().measure(["a", "b"], [1])
    with pytest.raises(ConfigError, match="reflection.recheck_phrases"):
        ReflectionCounter(ReflectionConfig(recheck_phrases=[]))
    with pytest.raises(ConfigError, match=r"reflection.exploration_phrases\[1\]"):
        ReflectionCounter(ReflectionConfig(exploration_phrases=["ok", "  "]))
