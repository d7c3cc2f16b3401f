"""Deduplication (exact, near, not distinct) and the text repairs/cleaners it relies on."""

import pytest

from srpo_mcore.curation.dedup import NearDupIndex, jaccard, lsh_shape, shingles
from srpo_mcore.data.text import (
    find_control_char,
    normalize_whitespace,
    repair_escapes,
    strip_markup,
    strip_urls,
)

BASE = (
    "A rectangular garden is 12 meters long and 5 meters wide. A path of uniform width runs around the "
    "outside of the garden, and the area of the path equals the area of the garden. How wide is the path?"
)
NEAR = BASE.replace("A path of uniform width runs", "A path of constant width runs")
DISTINCT = (
    "Let $f(x) = x^3 - 3x + 1$. How many real roots does $f$ have in the interval $[-2, 2]$, and what is "
    "the sum of the squares of those roots?"
)


def _dedup(texts, **kwargs):
    """Run query-then-add over ``(id, text, key)`` triples; return {removed id: match}."""
    index, removed = NearDupIndex(**kwargs), {}
    for record_id, text, key in texts:
        match = index.query(text, key)
        if match is None:
            index.add(record_id, text, key)
        else:
            removed[record_id] = match
    return removed


def test_exact_duplicates_after_normalisation():
    removed = _dedup(
        [("a", BASE, None), ("b", "  " + BASE.upper().replace(" ", "   "), None), ("c", DISTINCT, None)]
    )
    assert list(removed) == ["b"] and removed["b"].id == "a" and removed["b"].exact


def test_near_duplicates_are_caught_and_distinct_problems_kept():
    assert jaccard(shingles(BASE, 5), shingles(NEAR, 5)) > 0.85
    removed = _dedup([("a", BASE, None), ("b", NEAR, None), ("c", DISTINCT, None)], threshold=0.85)
    assert list(removed) == ["b"] and removed["b"].id == "a" and not removed["b"].exact
    assert 0.85 <= removed["b"].similarity < 1.0


def test_near_duplicates_with_different_answers_are_variants_not_duplicates():
    variant = BASE.replace("12 meters", "15 meters")
    assert _dedup([("a", BASE, "math:3"), ("b", variant, "math:4")]) == {}
    assert list(_dedup([("a", BASE, "math:3"), ("b", variant, "math:3")])) == ["b"]
    # an exact copy is a duplicate whatever its answer says
    assert list(_dedup([("a", BASE, "math:3"), ("b", BASE, "math:4")])) == ["b"]


def test_threshold_is_exact_not_approximate():
    similarity = jaccard(shingles(BASE, 5), shingles(NEAR, 5))
    assert _dedup([("a", BASE, None), ("b", NEAR, None)], threshold=min(similarity + 0.01, 1.0)) == {}


def test_lsh_shape_and_bad_threshold():
    bands, rows = lsh_shape(128, 0.85)
    assert bands * rows == 128 and (1 / bands) ** (1 / rows) <= 0.7
    with pytest.raises(ValueError, match="threshold"):
        NearDupIndex(threshold=0.0)


def test_repair_escapes_only_touches_known_commands():
    assert repair_escapes("$\x0crac{1}{2}$, $\triangle ABC$, $\x08inom{4}{2}$") == (
        "$\\frac{1}{2}$, $\\triangle ABC$, $\\binom{4}{2}$",
        3,
    )
    text = "col1\tcol2\x0cpage"
    assert repair_escapes(text) == (text, 0)
    assert find_control_char("a\tb\nc") is None and find_control_char("ab\x0cc") == 2


def test_strip_urls_keeps_link_text_and_images():
    text, count = strip_urls(
        "See [XOR](https://en.wikipedia.org/wiki/XOR) (https://aops.com/x) and www.example.com. ![](CDN/img)"
    )
    assert count == 3 and text == "See XOR  and . ![](CDN/img)"


def test_strip_markup_and_whitespace():
    assert strip_markup("<p>1 &lt;= n &lt;= 10<sup>5</sup></p>") == ("1 <= n <= 10^5", 5)
    assert normalize_whitespace("a  b \r\n\n\n\nc\u00a0d\u200b ", collapse_spaces=True) == "a b\n\nc d"
    assert normalize_whitespace("1  2\n", collapse_spaces=False) == "1  2"
