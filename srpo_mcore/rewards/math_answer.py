"""Final-answer extraction and the fast, exact parts of math answer checking (no math-verify here).

* :func:`answer_region` - the part of a response that may hold the final answer: after the last ``</think>``;
  nothing when a ``<think>`` was opened and never closed (unfinished reasoning).
* :func:`extract_answer` - the last ``\\boxed{...}`` / ``\\fbox{...}`` / ``<|begin_of_box|>...<|end_of_box|>``
  in that region; failing that, the last "answer is X" / "Answer: X".
* :func:`normalize_gold` - a dataset's gold answer as bare LaTeX (``\\boxed{}`` removed, AMC's ``142.0``
  as ``142``); ``None`` when there is nothing to compare against.
* :func:`quick_verdict` - ``True``/``False`` when the strings alone decide (same canonical text; two exact
  rationals - integers, so AIME's ``025`` equals ``25``, or fractions of integers), else ``None``:
  math-verify decides.
"""

from __future__ import annotations

import re
from fractions import Fraction

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_BOX_COMMANDS = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_GLM_BOX = re.compile(r"<\|begin_of_box\|>(.*?)<\|end_of_box\|>", re.S)
_ANSWER_IS = re.compile(r"(?:final\s+answer|answer)\s*(?:is\s*:?|:|=)\s*", re.I)
_MATH_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_CANON_DROP = re.compile(r"\\left(?![a-zA-Z])|\\right(?![a-zA-Z])|\\displaystyle|\\[,;:! ]|\s+|\$")
_INTEGER = re.compile(r"[+-]?(?:\d+|\d{1,3}(?:,\d{3})+|\d{1,3}(?:\{,\}\d{3})+)(?:\.0*)?")


def answer_region(response: str, *, require_think_close: bool = False) -> str | None:
    """The text after the last ``</think>``; the whole response if it has no think tags (unless
    ``require_think_close``); ``None`` if the reasoning was never closed."""
    if THINK_CLOSE in response:
        return response.rsplit(THINK_CLOSE, 1)[1]
    if require_think_close or THINK_OPEN in response:
        return None
    return response


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The balanced ``{...}`` group opening at ``text[start]``: (content, index after it)."""
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
        i += 1
    return None


def _box_content(text: str, m: re.Match) -> tuple[str, int] | None:
    """What a ``\\boxed`` at match ``m`` holds: ``\\boxed{x}`` or ``\\boxed x`` (one token)."""
    i = m.end()
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "{":
        return _braced(text, i)
    if m.end() < len(text) and text[m.end()] == " ":
        token = re.match(r"[^\s$]+", text[i:])
        if token:
            return token.group(0), i + token.end()
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete box in ``text`` (``None`` if there is none)."""
    best: tuple[int, str] | None = None
    for m in _BOX_COMMANDS.finditer(text):
        got = _box_content(text, m)
        if got is not None:
            best = (m.start(), got[0])
    for m in _GLM_BOX.finditer(text):
        if best is None or m.start() > best[0]:
            best = (m.start(), m.group(1))
    return None if best is None else best[1]


def _strip_math_delims(s: str) -> str:
    s = s.strip()
    changed = True
    while changed:
        changed = False
        for left, right in _MATH_DELIMS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left):len(s) - len(right)].strip()
                changed = True
    return s


def _answer_is(text: str) -> str | None:
    """The answer after the last "answer is" / "Answer:", up to the end of its line or sentence."""
    matches = list(_ANSWER_IS.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end():]
    line = rest.split("\n", 1)[0].strip()
    line = line.strip("*").strip()
    # Keep a math span whole ($...$), else stop at a sentence end.
    for left, right in _MATH_DELIMS:
        if line.startswith(left):
            end = line.find(right, len(left))
            if end > 0:
                return line[len(left):end].strip() or None
    line = re.split(r"\.(?:\s|$)", line, maxsplit=1)[0]
    line = line.rstrip(".").strip()
    return line or None


def extract_answer(response: str, *, require_think_close: bool = False) -> str | None:
    """The final answer of a response (bare LaTeX), or ``None``."""
    region = answer_region(response, require_think_close=require_think_close)
    if region is None:
        return None
    boxed = last_boxed(region)
    answer = boxed if boxed is not None else _answer_is(region)
    if answer is None:
        return None
    answer = _strip_math_delims(answer)
    return answer or None


def normalize_gold(gold: object) -> str | None:
    """A gold answer as bare LaTeX; ``None`` when empty or malformed (an unterminated ``\\boxed``)."""
    if gold is None or isinstance(gold, bool):
        return None
    if isinstance(gold, int):
        return str(gold)
    if isinstance(gold, float):
        return str(int(gold)) if gold.is_integer() else repr(gold)
    text = str(gold).strip()
    if _BOX_COMMANDS.search(text) or "<|begin_of_box|>" in text:
        inner = last_boxed(text)
        if inner is None:
            return None
        text = inner
    text = _strip_math_delims(text)
    return text or None


def canonical(s: str) -> str:
    """Whitespace, ``\\left``/``\\right``, spacing commands and ``$`` removed; ``\\dfrac``/``\\tfrac`` as
    ``\\frac``; a trailing period dropped. Equal canonical forms are equal answers."""
    s = _CANON_DROP.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return s.rstrip(".")


def integer_string(s: str) -> str | None:
    """``s`` as a canonical integer ("-25") if it is an integer literal (leading zeros, a sign, thousands
    separators and a ``.0`` tail allowed), else ``None``."""
    s = canonical(s)
    if len(s) > 200 or not _INTEGER.fullmatch(s):
        return None
    sign = "-" if s.startswith("-") else ""
    digits = s.lstrip("+-").split(".", 1)[0].replace("{,}", "").replace(",", "").lstrip("0") or "0"
    return "0" if digits == "0" else sign + digits


_FRACTION = re.compile(r"(?P<sign>[+-]?)(?:\\frac\{(?P<n1>[+-]?\d{1,200})\}\{(?P<d1>[+-]?\d{1,200})\}"
                       r"|\\frac(?P<n2>\d)(?P<d2>\d)|(?P<n3>\d{1,200})/(?P<d3>\d{1,200}))")


def rational_value(s: str) -> Fraction | None:
    """``s`` as an exact rational if it is an integer literal or a fraction of integers (``\\frac{a}{b}``,
    ``\\frac12``, ``a/b``, with a sign); ``None`` otherwise (decimals included: math-verify rounds those)."""
    integer = integer_string(s)
    if integer is not None:
        return Fraction(int(integer))
    m = _FRACTION.fullmatch(canonical(s))
    if m is None:
        return None
    num, den = next((m.group(f"n{k}"), m.group(f"d{k}")) for k in (1, 2, 3) if m.group(f"n{k}") is not None)
    if int(den) == 0:
        return None
    value = Fraction(int(num), int(den))
    return -value if m.group("sign") == "-" else value


def quick_verdict(gold: str, answer: str) -> bool | None:
    """Decide without math-verify when the strings allow it; ``None`` otherwise. Two exact rationals (integers
    or fractions of integers, so AIME's ``025`` equals ``25``) are equal exactly when their values are."""
    if canonical(gold) == canonical(answer):
        return True
    g = rational_value(gold)
    if g is None:
        return None
    a = rational_value(answer)
    return None if a is None else g == a
