"""Typed training/eval records: one math problem or one coding problem, plus their dict (JSON) form.

A record's dict form is what the curated JSONL holds, one record per line, tagged with ``"domain"``::

    {"domain": "math", "id": "aime24/1", "problem": "...", "answer": "204", "source": "aime24", ...}

``record_from_dict`` reads that form back and checks every field; it raises ``DataError`` naming the
field, and loaders add the file and row.

Code test contract (what a code reward runs):

* ``stdin``: run the program with ``input`` on standard input; its stdout must match ``output``.
* ``functional``: ``input`` holds the call's arguments, one JSON value per line; evaluate ``entry_point``
  in the program's namespace, call it with those arguments; the result must equal ``json.loads(output)``.
* ``check``: ``input`` is Python source that defines ``check(candidate)`` (HumanEval/LeetCode style);
  run the program, then ``check(<entry_point>)``; an exception means failure. ``output`` is unused ("").

``entry_point`` is a Python expression that yields the function under test: ``"has_close_elements"`` or
``"Solution().minOperations"``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

TestKind = Literal["stdin", "functional", "check"]
TEST_KINDS: tuple[str, ...] = ("stdin", "functional", "check")
DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")


class DataError(ValueError):
    """A data file or one of its rows is malformed.

    ``path`` is the file, ``row`` the 1-based row (the line number for JSONL, the list index for JSON and
    Parquet; ``None`` for file-level problems), ``field`` the offending field (``None`` when the whole row
    is bad).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        field: str | None = None,
        row_label: str = "row",
    ):
        self.message, self.path, self.row, self.field, self.row_label = message, path, row, field, row_label
        super().__init__(self._render())

    def _render(self) -> str:
        where = [str(self.path)] if self.path else []
        if self.row is not None:
            where.append(f"{self.row_label} {self.row}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return f"{': '.join(where)}: {self.message}" if where else self.message

    def at(self, *, path: str, row: int | None, row_label: str = "row") -> DataError:
        """The same error located in ``path`` at ``row`` (keeps a field already named)."""
        return DataError(self.message, path=path, row=row, field=self.field, row_label=row_label)


@dataclass(frozen=True)
class CodeTest:
    """One test of a coding problem; see the module docstring for what each ``kind`` means."""

    kind: TestKind
    input: str
    output: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "input": self.input, "output": self.output}


@dataclass
class MathRecord:
    """A math problem with a single gold answer that a verifier can check."""

    domain: ClassVar[str] = "math"
    id: str
    problem: str
    answer: str
    source: str = ""
    difficulty: str | None = None  # "easy" | "medium" | "hard", set by pass@k grading; None = ungraded
    solve_rate: float | None = None  # fraction of k samples solved when graded
    meta: dict[str, Any] = field(default_factory=dict)  # source extras (year, url, source rating, ...)

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, **_plain_fields(self)}


@dataclass
class CodeRecord:
    """A programming problem with executable tests (Python solutions)."""

    domain: ClassVar[str] = "code"
    id: str
    problem: str
    tests: list[CodeTest]
    starter_code: str = ""
    entry_point: str | None = None  # expression for the function under test; None for stdin-only
    time_limit: float | None = None  # seconds per test; None = the runner's default
    source: str = ""
    difficulty: str | None = None
    solve_rate: float | None = None
    reference_solution: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"domain": self.domain, **_plain_fields(self)}
        out["tests"] = [t.to_dict() for t in self.tests]
        return out


Record = MathRecord | CodeRecord


def _plain_fields(record: Record) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


# --- reading the dict form back, with field-level checks --------------------------------------------------


def require(row: dict, key: str, kind: type | tuple[type, ...] = str, *, optional: bool = False) -> Any:
    """``row[key]`` checked against ``kind``; raises ``DataError(field=key)`` when missing or mistyped."""
    if key not in row or row[key] is None:
        if optional:
            return None
        raise DataError("missing value" if key in row else "missing field", field=key)
    value = row[key]
    # bool is an int subclass: never accept it where a number is meant.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        names = " or ".join(k.__name__ for k in _as_tuple(kind))
        raise DataError(f"expected {names}, got {type(value).__name__}", field=key)
    return value


def require_text(row: dict, key: str) -> str:
    """A non-blank string field."""
    value = require(row, key, str)
    if not value.strip():
        raise DataError("empty text", field=key)
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _difficulty(row: dict) -> str | None:
    value = require(row, "difficulty", str, optional=True)
    if value is not None and value not in DIFFICULTIES:
        raise DataError(f"{value!r} is not one of {', '.join(DIFFICULTIES)}", field="difficulty")
    return value


def _solve_rate(row: dict) -> float | None:
    value = require(row, "solve_rate", (int, float), optional=True)
    if value is not None and not 0.0 <= value <= 1.0:
        raise DataError(f"must lie in [0, 1], got {value}", field="solve_rate")
    return None if value is None else float(value)


def code_test_from_dict(item: Any, index: int) -> CodeTest:
    """One entry of a record's ``tests`` list; errors name ``tests[index].key`` (0-based index)."""
    name = f"tests[{index}]"
    if not isinstance(item, dict):
        raise DataError(f"expected an object, got {type(item).__name__}", field=name)
    try:
        kind = require(item, "kind", str)
        if kind not in TEST_KINDS:
            raise DataError(f"{kind!r} is not one of {', '.join(TEST_KINDS)}", field="kind")
        return CodeTest(kind, require(item, "input", str), require(item, "output", str, optional=True) or "")
    except DataError as err:
        raise DataError(err.message, field=f"{name}.{err.field}") from None


def math_record_from_dict(row: dict) -> MathRecord:
    return MathRecord(
        id=require_text(row, "id"),
        problem=require_text(row, "problem"),
        answer=require_text(row, "answer"),
        source=require(row, "source", str, optional=True) or "",
        difficulty=_difficulty(row),
        solve_rate=_solve_rate(row),
        meta=require(row, "meta", dict, optional=True) or {},
    )


def code_record_from_dict(row: dict) -> CodeRecord:
    raw_tests = require(row, "tests", list)
    if not raw_tests:
        raise DataError("no tests", field="tests")
    time_limit = require(row, "time_limit", (int, float), optional=True)
    if time_limit is not None and time_limit <= 0:
        raise DataError(f"must be > 0 seconds, got {time_limit}", field="time_limit")
    return CodeRecord(
        id=require_text(row, "id"),
        problem=require_text(row, "problem"),
        tests=[code_test_from_dict(t, i) for i, t in enumerate(raw_tests)],
        starter_code=require(row, "starter_code", str, optional=True) or "",
        entry_point=require(row, "entry_point", str, optional=True) or None,
        time_limit=None if time_limit is None else float(time_limit),
        source=require(row, "source", str, optional=True) or "",
        difficulty=_difficulty(row),
        solve_rate=_solve_rate(row),
        reference_solution=require(row, "reference_solution", str, optional=True),
        meta=require(row, "meta", dict, optional=True) or {},
    )


def record_from_dict(row: dict) -> Record:
    """The inverse of ``record.to_dict()``, dispatching on ``row["domain"]``."""
    domain = require(row, "domain", str)
    if domain == "math":
        return math_record_from_dict(row)
    if domain == "code":
        return code_record_from_dict(row)
    raise DataError(f"{domain!r} is not one of 'math', 'code'", field="domain")
