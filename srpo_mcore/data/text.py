"""Text repairs and cleaning shared by the loaders and the curation pipeline.

Control characters: a LaTeX command such as ``\\frac`` that went through one JSON/Python unescape too
many turns into a control character plus the rest of the name (``\\x0c`` + ``rac``; ``\\t`` + ``riangle``
in aime25). ``repair_escapes`` puts the backslash back, but only when the control character and the
letters after it spell a known LaTeX command, and only for ``\\a \\b \\t \\v \\f`` (newline and carriage
return are ordinary whitespace and are never touched). ``find_control_char`` reports what is left so
that the loader can reject the row.
"""

from __future__ import annotations

import re

# Control character -> the letter whose backslash escape produces it.
_ESCAPE_LETTER = {"\x07": "a", "\x08": "b", "\t": "t", "\x0b": "v", "\x0c": "f"}
_LATEX_COMMANDS = frozenset(
    "alpha approx angle arccos arcsin arctan ast "
    "beta binom bar bmod boxed bf big bigg bigl bigr bot backslash begin bullet bigcup bigcap "
    "frac forall flat "
    "vec varphi vee vdots vert varepsilon vartheta varnothing "
    "triangle times theta text textbf textit textrm textstyle tfrac tan tau to top tilde therefore tanh".split()
)
_CONTROL_RUN = re.compile(r"([\x07\x08\t\x0b\x0c])([A-Za-z]+)")
# Anything below U+0020 except tab/newline/carriage return, plus DEL.
_BAD_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def repair_escapes(text: str) -> tuple[str, int]:
    """``text`` with escape-corrupted LaTeX commands restored, and how many were restored."""
    count = 0

    def fix(match: re.Match) -> str:
        nonlocal count
        name = _ESCAPE_LETTER[match.group(1)] + match.group(2)
        if name not in _LATEX_COMMANDS:
            return match.group(0)
        count += 1
        return "\\" + name

    return _CONTROL_RUN.sub(fix, text), count


def find_control_char(text: str) -> int | None:
    """Offset of the first control character other than tab/newline/CR, or ``None``."""
    match = _BAD_CONTROL.search(text)
    return None if match is None else match.start()


# --- cleaning (curation) -----------------------------------------------------------------------------------

_URL_BODY = r"(?:https?://|www\.)[^\s)\]}>\"']*[^\s)\]}>\"'.,;:!?]"
_URL = re.compile(r"(?<!\]\()\b" + _URL_BODY, re.IGNORECASE)  # not inside a Markdown image
_PAREN_URL = re.compile(r"(?<!\])\(\s*" + _URL_BODY + r"\s*\)", re.IGNORECASE)  # "(https://...)"
_MD_LINK = re.compile(r"(?<!!)\[([^\]\n]*)\]\((?:https?://|www\.)[^)\s]*\)")
_LATEX_HREF = re.compile(r"\\href\{[^}]*\}\{([^}]*)\}")
_LATEX_URL = re.compile(r"\\url\{[^}]*\}")

_HTML_TAG = re.compile(r"</?(?:p|br|div|span|strong|em|b|i|u|code|pre|ul|ol|li|font)(?:\s[^<>]*)?/?>", re.I)
_HTML_SUP = re.compile(r"<sup>(.*?)</sup>", re.I)
_HTML_SUB = re.compile(r"<sub>(.*?)</sub>", re.I)
_HTML_ENTITIES = {
    "&nbsp;": " ",
    "&lt;": "<",
    "&gt;": ">",
    "&le;": "<=",
    "&ge;": ">=",
    "&quot;": '"',
    "&#39;": "'",
}

# Instructions some sources bake into the problem; our prompt templates give their own.
_BOILERPLATE = (
    re.compile(
        r"^\s*Please solve the programming task below using a self-contained code snippet "
        r"in a markdown code block\.\s*",
        re.I,
    ),
    re.compile(r"^[ \t]*Please complete the following python code precisely:[ \t]*$", re.I | re.M),
)
_INVISIBLE = {"\u200b": "", "\u200c": "", "\u200d": "", "\ufeff": "", "\u00a0": " ", "\u2009": " "}


def strip_urls(text: str) -> tuple[str, int]:
    """Remove web links (bare, parenthesised, Markdown, ``\\url``/``\\href``), keeping link texts and
    Markdown images (the figure filter needs to see those). Returns (text, count)."""
    total = 0
    for pattern, repl in (
        (_MD_LINK, r"\1"),
        (_LATEX_HREF, r"\1"),
        (_LATEX_URL, ""),
        (_PAREN_URL, ""),
        (_URL, ""),
    ):
        text, n = pattern.subn(repl, text)
        total += n
    return text, total


def strip_markup(text: str) -> tuple[str, int]:
    """Remove HTML formatting tags and entities (``<sup>k</sup>`` becomes ``^k``); returns (text, count)."""
    total = 0
    for pattern, repl in ((_HTML_SUP, r"^\1"), (_HTML_SUB, r"_\1"), (_HTML_TAG, "")):
        text, n = pattern.subn(repl, text)
        total += n
    for entity, repl in _HTML_ENTITIES.items():
        total += text.count(entity)
        text = text.replace(entity, repl)
    return text, total


def strip_boilerplate(text: str) -> tuple[str, int]:
    """Remove answer-format instructions that sources embed in problems; returns (text, count)."""
    total = 0
    for pattern in _BOILERPLATE:
        text, n = pattern.subn("", text)
        total += n
    return text, total


def normalize_whitespace(text: str, *, collapse_spaces: bool) -> str:
    """Unify newlines, drop invisible characters, trailing spaces and runs of blank lines.

    ``collapse_spaces`` also squeezes runs of spaces/tabs inside lines (right for prose and LaTeX, wrong
    for code problems whose examples are laid out with spaces).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for char, repl in _INVISIBLE.items():
        text = text.replace(char, repl)
    if collapse_spaces:
        text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def normalize_for_dedup(text: str) -> str:
    """Case-, whitespace- and math-delimiter-insensitive key used by exact deduplication."""
    text = text.lower().replace("$", "").replace("\\(", "").replace("\\)", "")
    return re.sub(r"\s+", " ", text).strip()
