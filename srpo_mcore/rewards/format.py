"""Format checks (the shape the prompt template asks for) and the mixed-language measure (SRPO's penalty).

Formats (``RewardConfig.math_format`` / ``code_format``):

* ``think_boxed`` - R1-Zero: non-empty reasoning closed by exactly one ``</think>`` (an opening ``<think>``,
  if present, comes first: the ``r1_zero_*`` templates put it in the prompt), then an answer holding a
  complete, non-empty ``\\boxed{...}``;
* ``think_code`` - the same reasoning, then an answer holding a closed ```` ```python ```` block;
* ``boxed`` / ``code_block`` - only the answer part's requirement (after ``</think>`` if there is one);
* ``none`` - always well-formed.

Language mixing: the prose of a response (code blocks, inline code, LaTeX math and commands removed) is cut
into units - a word of an alphabetic script (Latin, Cyrillic, Greek, Arabic, Hebrew, Hangul, ...; one-letter
words ignored, they are mostly variables) or one CJK character (Han, kana). ``language_mix`` is the share of
units outside the most common script; mixing CJK and Latin prose gives a large share, a Latin response with a
few Greek letters a small one.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from srpo_mcore.rewards.math_answer import THINK_CLOSE, THINK_OPEN, last_boxed

FORMATS = ("think_boxed", "boxed", "think_code", "code_block", "none")
_CODE_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.S | re.I)
_PYTHON_BLOCK = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)```", re.S | re.I)


def _reasoning_ok(response: str) -> tuple[bool, str]:
    """(whether the think part is well-formed, the answer part after it)."""
    if response.count(THINK_CLOSE) != 1 or response.count(THINK_OPEN) > 1:
        return False, ""
    reasoning, answer = response.split(THINK_CLOSE, 1)
    if THINK_OPEN in reasoning:
        before, reasoning = reasoning.split(THINK_OPEN, 1)
        if before.strip():
            return False, ""
    elif THINK_OPEN in answer:
        return False, ""
    return bool(reasoning.strip()), answer


def _has_box(answer: str) -> bool:
    content = last_boxed(answer)
    return content is not None and bool(content.strip())


def _has_python_block(answer: str) -> bool:
    return any(m.group(1).strip() for m in _PYTHON_BLOCK.finditer(answer))


def format_ok(response: str, mode: str) -> bool:
    """Whether ``response`` has the shape ``mode`` asks for (see the module docstring)."""
    if mode == "none":
        return True
    if mode in ("think_boxed", "think_code"):
        ok, answer = _reasoning_ok(response)
        if not ok:
            return False
    elif mode in ("boxed", "code_block"):
        answer = response.rsplit(THINK_CLOSE, 1)[-1]
    else:
        raise ValueError(f"format mode {mode!r} is not one of {FORMATS}")
    return _has_box(answer) if mode.endswith("boxed") else _has_python_block(answer)


def extract_code(response: str, *, require_think_close: bool = False) -> str | None:
    """The program of a response: the last fenced ```` ```python ```` (or unlabelled) block after ``</think>``."""
    if THINK_CLOSE in response:
        region = response.rsplit(THINK_CLOSE, 1)[1]
    elif require_think_close or THINK_OPEN in response:
        return None
    else:
        region = response
    blocks = [m.group(1) for m in _CODE_BLOCK.finditer(region) if m.group(1).strip()]
    return blocks[-1] if blocks else None


# -- language mixing -----------------------------------------------------------------------------------------

_NOT_PROSE = re.compile(
    r"```.*?(?:```|$)"                # fenced code (to the end if unclosed)
    r"|`[^`\n]*`"                     # inline code
    r"|\$\$.*?\$\$|\$[^$]*\$"         # $$...$$ and $...$
    r"|\\\[.*?\\\]|\\\(.*?\\\)"       # \[...\] and \(...\)
    r"|\\[A-Za-z]+"                   # LaTeX commands
    r"|https?://\S+",                 # URLs
    re.S)
_SCRIPTS = (
    ("cjk", re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")),
    ("hangul", re.compile(r"[\uac00-\ud7af\u1100-\u11ff]{2,}")),
    ("latin", re.compile(r"[A-Za-z\u00c0-\u024f]{2,}")),
    ("cyrillic", re.compile(r"[\u0400-\u04ff]{2,}")),
    ("greek", re.compile(r"[\u0370-\u03ff]{2,}")),
    ("arabic", re.compile(r"[\u0600-\u06ff]{2,}")),
    ("hebrew", re.compile(r"[\u0590-\u05ff]{2,}")),
    ("devanagari", re.compile(r"[\u0900-\u097f]{2,}")),
    ("thai", re.compile(r"[\u0e00-\u0e7f]{2,}")),
)


@dataclass(frozen=True)
class LanguageMix:
    fraction: float  # share of prose units outside the dominant script
    units: int  # prose units counted
    dominant: str  # the dominant script ("" when there is no prose)


def language_mix(response: str) -> LanguageMix:
    """How much of the response's prose is outside its dominant script."""
    prose = _NOT_PROSE.sub(" ", response)
    counts = Counter({name: len(pattern.findall(prose)) for name, pattern in _SCRIPTS})
    total = sum(counts.values())
    if total == 0:
        return LanguageMix(0.0, 0, "")
    dominant, top = counts.most_common(1)[0]
    return LanguageMix((total - top) / total, total, dominant)


def language_penalty(response: str, threshold: float, min_units: int) -> tuple[float, LanguageMix]:
    """1.0 when the mix exceeds ``threshold`` (and there are at least ``min_units`` units), else 0.0."""
    mix = language_mix(response)
    return (1.0 if mix.units >= min_units and mix.fraction > threshold else 0.0), mix
