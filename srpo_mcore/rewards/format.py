"""Format checks (the shape the prompt template asks for) and the mixed-language measure (SRPO's penalty).

Formats (``RewardConfig.math_format`` / ``code_format``):

* ``think_boxed`` - R1-Zero: non-empty reasoning closed by exactly one ``</think>`` (an opening ``<think>``,
  if present, comes first: the ``r1_zero_*`` templates put it in the prompt), then an answer holding a
  complete, non-empty ``\\boxed{...}``;
* ``think_code`` - the same reasoning, then an answer holding a closed ```` ```python ```` block;
* ``boxed`` / ``code_block`` - only the answer part's requirement (after ``</think>`` if there is one);
* ``none`` - always well-formed.

Language mixing (SRPO's penalty), measured against the *prompt's* language: the share of the response's prose
written in another script than the prompt's prose. Prose is what remains after removing code (fenced blocks,
inline code), math (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``, ``\\boxed{...}``, LaTeX commands),
URLs, tags (``<think>``), identifiers (words with a digit or ``_``, camelCase) and one-letter words (variables).
Scripts are counted in comparable units, letter-equivalents: one per letter of an alphabetic script (Latin,
Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai), :data:`SYLLABIC_WEIGHT` per Han / kana / Hangul character (a
CJK character carries about what 2-3 Latin letters do: an English word averages ~4.7 letters, a Chinese word ~2
characters). A prompt without prose (e.g. ``12+34=``) falls back to the response's dominant script.

The penalty is graded: 0 up to ``threshold`` (a few English technical terms in a Chinese answer), then rising
linearly to 1 when all the prose is in another script.
"""

from __future__ import annotations

import re
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

SYLLABIC_WEIGHT = 2.5  # letter-equivalents per CJK (Han, kana) or Hangul character
_NOT_PROSE = re.compile(
    r"```.*?(?:```|$)"                # fenced code (to the end if unclosed)
    r"|`[^`\n]*`"                     # inline code
    r"|\$\$.*?\$\$|\$[^$]*\$"         # $$...$$ and $...$
    r"|\\\[.*?\\\]|\\\(.*?\\\)"       # \[...\] and \(...\)
    r"|\\[A-Za-z]+"                   # LaTeX commands (\boxed{...} is removed whole before)
    r"|https?://\S+"                  # URLs
    r"|</?[A-Za-z][A-Za-z0-9_-]{0,20}>"  # tags: <think>, </answer>
    r"|(?<![A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_]*[_0-9][A-Za-z0-9_]*"  # identifiers with _ or digits: max_len, dp2
    r"|(?<![A-Za-z0-9_])[a-z]+[A-Z][A-Za-z0-9_]*",                  # camelCase identifiers: getValue
    re.S)
_LATIN = "A-Za-z\u00c0-\u024f"
_LETTERS = {  # script -> character class (inside [...])
    "cjk": "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f",
    "hangul": "\uac00-\ud7af\u1100-\u11ff",
    "latin": _LATIN,
    "cyrillic": "\u0400-\u04ff",
    "greek": "\u0370-\u03ff",
    "arabic": "\u0600-\u06ff",
    "hebrew": "\u0590-\u05ff",
    "devanagari": "\u0900-\u097f",
    "thai": "\u0e00-\u0e7f",
}
_SYLLABIC = ("cjk", "hangul")
# one-letter words of an alphabetic script (variables: x, n, α) are not prose
_ONE_LETTER = re.compile("|".join(f"(?<![{c}])[{c}](?![{c}])" for n, c in _LETTERS.items() if n not in _SYLLABIC))
_SCRIPT_CHARS = {name: re.compile(f"[{chars}]") for name, chars in _LETTERS.items()}
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


@dataclass(frozen=True)
class LanguageMix:
    fraction: float  # share of prose units outside the expected script
    units: float  # prose units (letter-equivalents) counted
    expected: str  # the script the prose should be in ("" when there is no prose)
    expected_from: str  # "prompt", or "response" (its dominant script) when the prompt has no prose


def _drop_boxes(text: str) -> str:
    """``text`` without any ``\\boxed{...}`` / ``\\fbox{...}`` (balanced braces; an unclosed one to the end)."""
    out, pos = [], 0
    for m in _BOX.finditer(text):
        if m.start() < pos:
            continue
        out.append(text[pos:m.start()])
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        pos = i
    out.append(text[pos:])
    return " ".join(out)


def script_units(text: str) -> dict[str, float]:
    """Letter-equivalents of prose per script (code, math, identifiers, tags and one-letter words removed)."""
    prose = _ONE_LETTER.sub(" ", _NOT_PROSE.sub(" ", _drop_boxes(text)))
    return {name: len(pattern.findall(prose)) * (SYLLABIC_WEIGHT if name in _SYLLABIC else 1.0)
            for name, pattern in _SCRIPT_CHARS.items()}


def _dominant(units: dict[str, float]) -> str:
    name = max(units, key=units.__getitem__)
    return name if units[name] > 0 else ""


def language_mix(response: str, prompt: str = "") -> LanguageMix:
    """How much of the response's prose is in another script than the prompt's prose (or, when the prompt has
    none, than the response's own dominant script)."""
    units = script_units(response)
    total = sum(units.values())
    expected, source = _dominant(script_units(prompt)) if prompt else "", "prompt"
    if not expected:
        expected, source = _dominant(units), "response"
    if total == 0:
        return LanguageMix(0.0, 0.0, expected, source)
    return LanguageMix((total - units[expected]) / total, total, expected, source)


def language_penalty(response: str, threshold: float, min_units: int, prompt: str = "") -> tuple[float, LanguageMix]:
    """0 while the foreign share is at most ``threshold`` (or the prose has fewer than ``min_units`` units), then
    linear up to 1 when all prose is foreign: ``(fraction - threshold) / (1 - threshold)``."""
    mix = language_mix(response, prompt)
    if mix.units < min_units or mix.fraction <= threshold:
        return 0.0, mix
    return (mix.fraction - threshold) / (1.0 - threshold), mix
