"""Rule-based problem filters from the SRPO paper's data curation, one named rule per reason.

Math: several questions in one, proof-only problems, problems that need a figure or table.
Code: problems that need files, network access or a special environment (interactive judge, SQL, pandas,
shell, threads). ``needs_figure`` applies to both domains (Codeforces statements embed images).

A rule returns the evidence (the matched text) or ``None``; the curation report quotes the evidence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from srpo_mcore.data.records import CodeRecord, MathRecord, Record


@dataclass(frozen=True)
class Filter:
    name: str
    domain: str | None  # "math", "code" or None for both
    description: str
    rule: Callable[[Record], str | None]

    def __call__(self, record: Record) -> str | None:
        if self.domain is not None and record.domain != self.domain:
            return None
        return self.rule(record)


def _search(patterns: tuple[re.Pattern, ...], text: str) -> str | None:
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return match.group(0).strip()
    return None


_MATH_SPANS = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)|\[asy\].*?\[/asy\]", re.S)


def prose(text: str) -> str:
    """``text`` without inline/display math and Asymptote code (question marks there are not questions)."""
    return _MATH_SPANS.sub(" ", text)


# --- math: several questions in one --------------------------------------------------------------------------

# Sub-question labels, one family per pattern; upper-case (A)-(E) are multiple-choice options, not parts.
_PART_FAMILIES = (
    re.compile(r"(?:^|[\s.:;?])\(([a-e])\)\s", re.M),
    re.compile(r"(?:^|[\s.:;?])\((i{1,3}|iv)\)\s", re.M),
    re.compile(r"^\s*\(?([1-5])[.)]\s", re.M),
    re.compile(r"\bpart\s*\(?([a-e1-5])\)?[:.]", re.I),
)
_ASK = re.compile(
    r"\?|(?:^|[.!?:]\s+|\)\s*)(?:find|compute|determine|calculate|evaluate|prove|show|solve|simplify|explain)\b",
    re.I | re.M,
)
_SEVERAL_QUESTIONS = re.compile(r"\banswer (?:the following|these|both|all) (?:\w+ )?questions\b", re.I)


def several_questions(record: Record) -> str | None:
    """Two or more labelled parts ((a)/(b), (i)/(ii), 1./2.) that each ask something."""
    text = prose(record.problem)
    explicit = _SEVERAL_QUESTIONS.search(text)
    if explicit:
        return explicit.group(0)
    if len(_ASK.findall(text)) < 2:
        return None
    for family in _PART_FAMILIES:
        labels = [m.group(1).lower() for m in family.finditer(text)]
        if len(set(labels)) >= 2:
            return f"parts {', '.join(dict.fromkeys(labels))}"
    return None


# --- math: proof-only problems -------------------------------------------------------------------------------

_PROOF = (
    re.compile(r"\b(?:prove|show|demonstrate|verify|justify)\s+(?:that|why)\b", re.I),
    re.compile(r"\b(?:prove|disprove)\b|\bgive a proof\b", re.I),
)
_NON_ANSWERS = frozenset(
    "proof qed see proof see solution see the solution see below omitted n/a none trivial shown proven true "
    "false yes no".split(" ")
) | {"see proof", "see solution", "see the solution", "see below", "n/a"}


def has_checkable_answer(answer: str) -> bool:
    """Whether ``answer`` looks like a value a verifier can compare (not prose or a proof placeholder)."""
    text = answer.strip().strip(".").strip()
    if not text or text.lower() in _NON_ANSWERS:
        return False
    if re.search(r"[\d\\^=+\-*/()<>{}_]", text):
        return True
    return len(text.split()) <= 2  # a symbol or short word ("x", "odd"); longer prose is not checkable


def proof_only(record: Record) -> str | None:
    """Asks for a proof and has no checkable final answer."""
    assert isinstance(record, MathRecord)
    evidence = _search(_PROOF, prose(record.problem))
    if evidence is None or has_checkable_answer(record.answer):
        return None
    return f"{evidence!r} with answer {record.answer.strip()[:40]!r}"


# --- both: needs a figure or a table -------------------------------------------------------------------------

_FIGURE = (
    re.compile(r"\[asy\]|\\includegraphics|<img\b|!\[[^\]]*\]\([^)]*\)", re.I),
    re.compile(
        r"\bas (?:shown|pictured|illustrated|depicted)\b"
        r"(?!\s+(?:in|by) the (?:above |following )?(?:code|example|sample|statement|formula))",
        re.I,
    ),
    re.compile(r"\b(?:in|from|see|of) the (?:figure|diagram|picture)s?\b", re.I),
    re.compile(r"\b(?:figure|diagram|picture|image|graph|chart|table) (?:below|above)\b", re.I),
    re.compile(
        r"\b(?:following|accompanying|adjacent) (?:figure|diagram|picture|image|graph|chart|table)\b", re.I
    ),
    re.compile(r"\b(?:shown|pictured|drawn|illustrated) (?:below|above|here|at right|at left)\b", re.I),
)
# Code statements explain their samples with figures that the solver does not need: only the statement
# before the first input/example section is searched.
_CODE_SECTIONS = re.compile(r"\n\s*(?:Sample Input|Examples?\b|Input Format|Input\s*\n|Constraints)", re.I)


def needs_figure(record: Record) -> str | None:
    text = record.problem
    if isinstance(record, CodeRecord):
        text = _CODE_SECTIONS.split(text, maxsplit=1)[0]
    return _search(_FIGURE, text)


# --- code: files, network, special environments --------------------------------------------------------------

_FILES = (
    re.compile(r"\b(?:input|output)\.txt\b", re.I),
    re.compile(r"\b(?:read|load|open)s?\s+(?:\w+\s+){0,3}from\s+(?:a|the)\s+(?:\w+\s+)?file\b", re.I),
    re.compile(
        r"\b(?:write|save|append)s?\s+(?:\w+\s+){0,3}(?:to|into)\s+(?:a|the)\s+(?:\w+\s+)?file\b", re.I
    ),
    re.compile(r"\b(?:the|a) file (?:named|called)\b|\b\w+\.(?:csv|xlsx?|json|db|sqlite)\b(?=\s+file)", re.I),
    re.compile(r"\b(?:csv|excel|log) file\b|\bfile path\b|\bon disk\b", re.I),
)
_NETWORK = (
    re.compile(r"\bhttps? requests?\b|\bmakes? (?:an? )?(?:http|web|api) (?:request|call)", re.I),
    re.compile(r"\b(?:rest )?api endpoint\b|\bweb ?(?:service|server|page|api)\b", re.I),
    re.compile(r"\b(?:via|over|from) the internet\b|\binternet connection\b|\bnetwork access\b", re.I),
    re.compile(r"\bdownloads? (?:the|a) (?:file|data|page|dataset)s? from\b|\bfrom the url\b", re.I),
    re.compile(r"\b(?:requests|urllib|aiohttp|socket)\.\w+\(|\bimport (?:requests|socket|urllib)\b", re.I),
)
_SPECIAL_ENV = (
    re.compile(r"\binteractive problem\b|\bthis problem is interactive\b|\bflush the output\b", re.I),
    re.compile(r"\b(?:write|an?) (?:\w+ )?sql\b|\bsql (?:query|schema|table)\b|\bdatabase table\b", re.I),
    re.compile(r"\bDataFrame\b|\bimport pandas\b|\bpandas (?:library|dataframe)\b"),
    re.compile(r"\b(?:bash|shell|powershell) (?:script|command)s?\b", re.I),
    re.compile(
        r"\bmulti-?thread(?:ed|ing)?\b|\b(?:different|multiple|concurrent) threads\b|\bthread-safe\b", re.I
    ),
    re.compile(r"\b(?:requires?|using|on) (?:a |the )?(?:gpu|cuda)\b|\btkinter\b|\bgui\b", re.I),
)


def needs_files(record: Record) -> str | None:
    return _search(_FILES, record.problem)


def needs_network(record: Record) -> str | None:
    return _search(_NETWORK, record.problem)


def needs_special_env(record: Record) -> str | None:
    return _search(_SPECIAL_ENV, record.problem)


FILTERS: dict[str, Filter] = {
    f.name: f
    for f in (
        Filter("several_questions", "math", "several questions in one problem", several_questions),
        Filter("proof_only", "math", "asks for a proof, no checkable answer", proof_only),
        Filter("needs_figure", None, "needs a figure, image or table that the text refers to", needs_figure),
        Filter("needs_files", "code", "reads or writes files", needs_files),
        Filter("needs_network", "code", "needs network access", needs_network),
        Filter(
            "needs_special_env",
            "code",
            "needs an interactive judge, SQL, pandas, shell, threads or a GPU",
            needs_special_env,
        ),
    )
}


def first_failed(record: Record, names: tuple[str, ...] | list[str]) -> tuple[str, str] | None:
    """``(filter name, evidence)`` of the first filter in ``names`` that rejects ``record``, else ``None``."""
    for name in names:
        evidence = FILTERS[name](record)
        if evidence is not None:
            return name, evidence
    return None
