"""Prompt templates per domain, selected by name (``DataConfig.math_template`` / ``code_template``).

A template is plain text with placeholders replaced literally (no ``str.format``, so LaTeX braces such as
``\\boxed{}`` need no escaping):

* ``{problem}``      the record's problem text;
* ``{starter_code}`` for code: "Start from this code:" plus a fenced block, or "" when the record has no
  starter code or the problem already shows it;
* ``{io_hint}``      for code: how the program is run (stdin/stdout, or which function is called).

``r1_zero_*`` are the DeepSeek-R1-Zero style completion prompts used for base models: the completion starts
right after ``<think>``. ``*_chat`` templates are user turns for models with a chat template; pass
``messages(record)`` to the tokenizer's ``apply_chat_template``. ``get_template`` also accepts a path to a
UTF-8 text file holding a custom template.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from srpo_mcore.data.records import CodeRecord, Record

_R1_ZERO_PREAMBLE = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with "
    "the answer. The reasoning process is enclosed within <think> </think> tags, i.e., "
    "<think> reasoning process here </think> answer here."
)

_BUILTIN = {
    "r1_zero_math": (
        "math",
        _R1_ZERO_PREAMBLE + "\nUser: {problem}\nPlease reason step by step, and put your final answer "
        "within \\boxed{}.\nAssistant: <think>",
    ),
    "r1_zero_code": (
        "code",
        _R1_ZERO_PREAMBLE + "\nUser: {problem}\n{starter_code}{io_hint}\nWrite your final solution as a "
        "complete Python program in a single ```python code block.\nAssistant: <think>",
    ),
    "math_chat": (
        "math",
        "{problem}\nPlease reason step by step, and put your final answer within \\boxed{}.",
    ),
    "code_chat": (
        "code",
        "{problem}\n{starter_code}{io_hint}\nWrite your final solution as a complete Python program in a "
        "single ```python code block.",
    ),
}


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    domain: str  # "math" | "code"
    text: str

    def render(self, record: Record) -> str:
        """The prompt for ``record`` (a completion prompt, or a chat user turn for ``*_chat``)."""
        if record.domain != self.domain:
            raise ValueError(
                f"template {self.name!r} is for {self.domain} records, got a {record.domain} "
                f"record ({record.id})"
            )
        text = self.text.replace("{problem}", record.problem.strip())
        if isinstance(record, CodeRecord):
            text = text.replace("{starter_code}", _starter_block(record)).replace(
                "{io_hint}", _io_hint(record)
            )
        return text

    def messages(self, record: Record) -> list[dict[str, str]]:
        """``render`` as a one-turn chat for ``tokenizer.apply_chat_template``."""
        return [{"role": "user", "content": self.render(record)}]


_REGISTRY: dict[str, PromptTemplate] = {name: PromptTemplate(name, d, t) for name, (d, t) in _BUILTIN.items()}


def template_names(domain: str | None = None) -> tuple[str, ...]:
    return tuple(n for n, t in _REGISTRY.items() if domain is None or t.domain == domain)


def register_template(name: str, domain: str, text: str) -> PromptTemplate:
    """Add a named template; ``text`` must contain ``{problem}``."""
    if domain not in ("math", "code"):
        raise ValueError(f"template domain must be 'math' or 'code', got {domain!r}")
    if "{problem}" not in text:
        raise ValueError(f"template {name!r} has no {{problem}} placeholder")
    if name in _REGISTRY and _REGISTRY[name].text != text:
        raise ValueError(f"template {name!r} is already registered with different text")
    _REGISTRY[name] = PromptTemplate(name, domain, text)
    return _REGISTRY[name]


def get_template(name_or_path: str, domain: str) -> PromptTemplate:
    """A registered template by name, or a custom one read from a text file, checked against ``domain``."""
    template = _REGISTRY.get(name_or_path)
    if template is None:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(
                f"unknown prompt template {name_or_path!r}: use one of "
                f"{', '.join(template_names(domain))} or a path to a template text file"
            )
        text = path.read_text(encoding="utf-8")
        if "{problem}" not in text:
            raise ValueError(f"template file {path} has no {{problem}} placeholder")
        template = PromptTemplate(str(path), domain, text)
    if template.domain != domain:
        raise ValueError(f"prompt template {name_or_path!r} is for {template.domain}, not {domain}")
    return template


def render_prompts(
    records: Iterable[Record],
    templates: dict[str, PromptTemplate],
    *,
    count_tokens: Callable[[str], int] | None = None,
    max_prompt_tokens: int | None = None,
) -> tuple[list[tuple[Record, str]], list[str]]:
    """``(record, prompt)`` pairs using ``templates[record.domain]``, and the ids dropped for exceeding
    ``max_prompt_tokens`` (measured with ``count_tokens``, e.g. ``len(tokenizer.encode(s))``)."""
    kept, dropped = [], []
    for record in records:
        prompt = templates[record.domain].render(record)
        if count_tokens and max_prompt_tokens and count_tokens(prompt) > max_prompt_tokens:
            dropped.append(record.id)
            continue
        kept.append((record, prompt))
    return kept, dropped


def _starter_block(record: CodeRecord) -> str:
    starter = record.starter_code.strip()
    if not starter or starter in record.problem:
        return ""
    return f"Start from this code:\n```python\n{record.starter_code.rstrip()}\n```\n"


def _io_hint(record: CodeRecord) -> str:
    kinds = {t.kind for t in record.tests}
    if kinds == {"stdin"}:
        return "The program reads from standard input and writes the answer to standard output."
    if not record.entry_point:
        return ""
    klass, _, method = record.entry_point.partition("().")
    if method:
        return f"Your code must define class `{klass}` with the method `{method}`, which the tests call."
    return f"Your code must define the function `{record.entry_point}`, which the tests call."
