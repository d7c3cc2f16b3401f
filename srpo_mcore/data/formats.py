"""Field mappings from the public dataset layouts to ``MathRecord`` / ``CodeRecord``.

Each format is a converter ``(row, source, row number) -> Record`` that raises ``DataError(field=...)``; the
loader adds file and row. The math layouts differ only in data (id fields, answer padding), so they are one
table of :class:`MathLayout`; the code layouts each have a function. ``detect_format`` recognises a row's layout by its keys.

| format        | layout (keys)                                          | example file                 |
|---------------|--------------------------------------------------------|------------------------------|
| record        | our own ``to_dict()`` form, tagged with ``domain``     | curated ``*.jsonl``          |
| aime          | problem, answer ("025"), year, aime_number, problem_number | aime24, train_aime_1983_2023 |
| amc           | problem, answer (float 142.0), url                     | amc.json                     |
| math500       | problem, answer, unique_id                             | math500.json                 |
| math_train    | problem, answer, type                                  | train_math.json              |
| problem_answer| problem, answer                                        | aime25.jsonl                 |
| humaneval     | task_id, prompt, test (def check), entry_point         | HumanEval.jsonl.gz           |
| leetcode      | problem, tests {"functional": "def check...check(X)"}  | leetcode_*.json              |
| codeforces    | problem, tests [{input, output}]                       | codeforces_test.json         |
| livecodebench | problem, starter_code, tests [{input, output, testtype}] | livecodebench_*.json       |

``tests`` may also be given as a JSON-encoded string (common in Parquet exports).
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from srpo_mcore.data.records import (
    CodeRecord,
    CodeTest,
    DataError,
    MathRecord,
    Record,
    record_from_dict,
    require,
    require_text,
)
from srpo_mcore.data.text import strip_boilerplate

Converter = Callable[[dict, str, int], Record]  # (row, source, 1-based row number) -> record


# --- field helpers -------------------------------------------------------------------------------------------


def canonical_answer(value: Any, *, strip_leading_zeros: bool = False, field: str = "answer") -> str:
    """A gold answer as text: ``142.0 -> "142"``, ``0.5 -> "0.5"``, and with ``strip_leading_zeros``
    ``"025" -> "25"`` (AIME-style zero padding)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DataError(f"expected str, int or float, got {type(value).__name__}", field=field)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DataError(f"not a finite number: {value}", field=field)
        return str(int(value)) if value.is_integer() else repr(value)
    # Leading tab/form feed may be an escape-corrupted command (TAB+"heta"): the loader repairs those.
    text = re.sub(r"^[ \n\r]+|\s+$", "", str(value))
    if not text:
        raise DataError("empty text", field=field)
    if strip_leading_zeros and re.fullmatch(r"-?\d+", text):
        text = str(int(text))
    return text


def _answer(row: dict, *, strip_leading_zeros: bool = False) -> str:
    require(row, "answer", (str, int, float))
    return canonical_answer(row["answer"], strip_leading_zeros=strip_leading_zeros)


def _meta(row: dict, used: set[str]) -> dict[str, Any]:
    """Source fields we do not map, kept for reference; a source's own rating becomes ``source_difficulty``."""
    meta = {k: v for k, v in row.items() if k not in used}
    if "difficulty" in meta:
        meta["source_difficulty"] = meta.pop("difficulty")
    return meta


def _tests_value(row: dict) -> Any:
    """``row["tests"]``, decoding a JSON-encoded string."""
    value = require(row, "tests", (list, dict, str))
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise DataError(f"malformed tests JSON: {err.msg} at char {err.pos}", field="tests") from None
    return value


def _test_list(row: dict) -> list:
    value = _tests_value(row)
    if not isinstance(value, list):
        raise DataError(f"expected a list of tests, got {type(value).__name__}", field="tests")
    if not value:
        raise DataError("no tests", field="tests")
    return value


def _io_text(item: dict, key: str, index: int) -> str:
    if key not in item:
        raise DataError("missing field", field=f"tests[{index}].{key}")
    value = item[key]
    if isinstance(value, list):  # some exports store lines as a list
        value = "\n".join(map(str, value))
    if not isinstance(value, str):
        raise DataError(f"expected str, got {type(value).__name__}", field=f"tests[{index}].{key}")
    return value


_TIME_LIMIT = re.compile(r"time limit(?: per test)?\s*:?\s*([\d.]+)\s*(ms|milliseconds?|s|seconds?)\b", re.I)


def _time_limit(problem: str) -> float | None:
    match = _TIME_LIMIT.search(problem)
    if match is None:
        return None
    value = float(match.group(1))
    return value / 1000 if match.group(2).lower().startswith("m") else value


_DEF = re.compile(r"^([ \t]*)def\s+([A-Za-z_]\w*)\s*\(", re.M)
_CLASS = re.compile(r"^class\s+([A-Za-z_]\w*)", re.M)


def entry_point_from_starter(starter_code: str) -> str | None:
    """``"Solution().f"`` for a method stub, ``"f"`` for a top-level function stub, else ``None``."""
    match = _DEF.search(starter_code)
    if match is None:
        return None
    indented, name = bool(match.group(1)), match.group(2)
    klass = _CLASS.search(starter_code[: match.start()])
    return f"{klass.group(1)}().{name}" if indented and klass else name


_TRAILING_CALL = re.compile(r"\n\s*check\((?P<target>[^\n]+)\)\s*$")


def split_check_call(program: str) -> tuple[str, str | None]:
    """Split ``def check(candidate): ...\\ncheck(Solution().f)`` into (definition, ``"Solution().f"``)."""
    match = _TRAILING_CALL.search(program)
    if match is None:
        return program, None
    return program[: match.start()].rstrip() + "\n", match.group("target").strip()


_STARTER_BLOCK = re.compile(r"```python\n(.*?)```\s*$", re.S)


# --- math formats --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MathLayout:
    """How one public math layout maps onto a :class:`MathRecord` (every math format is one of these)."""

    id_fields: tuple[str, ...] = ()  # joined with "-" into the id; none given (or all empty): the row number
    id_required: bool = False  # the id fields must be non-empty text (else an error naming the field)
    strip_leading_zeros: bool = False  # AIME-style gold answers: "025" -> "25"
    meta_skip: tuple[str, ...] = ()  # fields kept out of ``meta`` besides problem and answer

    def __call__(self, row: dict, source: str, index: int) -> MathRecord:
        if self.id_required:
            record_id = f"{source}/" + "-".join(require_text(row, f) for f in self.id_fields)
        else:
            key = "-".join(str(row.get(f, "")) for f in self.id_fields)
            record_id = f"{source}/{key}" if key.strip("-") else f"{source}/{index}"
        return MathRecord(
            id=record_id,
            problem=require_text(row, "problem"),
            answer=_answer(row, strip_leading_zeros=self.strip_leading_zeros),
            source=source,
            meta=_meta(row, {"problem", "answer", *self.meta_skip}),
        )


MATH_LAYOUTS: dict[str, MathLayout] = {
    "aime": MathLayout(id_fields=("year", "aime_number", "problem_number"), strip_leading_zeros=True),
    "amc": MathLayout(strip_leading_zeros=True),
    "math500": MathLayout(id_fields=("unique_id",), id_required=True, meta_skip=("unique_id",)),
    "math_train": MathLayout(),  # MATH train rows: their ``type`` lands in ``meta``
    "problem_answer": MathLayout(),
}


# --- code formats --------------------------------------------------------------------------------------------


def from_humaneval(row: dict, source: str, index: int) -> CodeRecord:
    prompt = require_text(row, "prompt")
    solution = require(row, "canonical_solution", str, optional=True)
    return CodeRecord(
        id=require_text(row, "task_id"),
        problem=f"Complete the following Python function.\n```python\n{prompt.strip()}\n```",
        tests=[CodeTest("check", require_text(row, "test"))],
        starter_code=prompt,
        entry_point=require_text(row, "entry_point"),
        source=source,
        reference_solution=None if solution is None else prompt + solution,
    )


def from_leetcode(row: dict, source: str, index: int) -> CodeRecord:
    problem, _ = strip_boilerplate(require_text(row, "problem"))
    tests = _tests_value(row)
    if not isinstance(tests, dict):
        raise DataError(f"expected an object with 'functional', got {type(tests).__name__}", field="tests")
    program = tests.get("functional")
    if not isinstance(program, str) or "def check" not in program:
        raise DataError("expected a 'def check(candidate)' program", field="tests.functional")
    check, target = split_check_call(program)
    block = _STARTER_BLOCK.search(problem)
    starter = block.group(1) if block else ""
    solutions = row.get("solutions")
    reference = solutions[0] if isinstance(solutions, list) and solutions else solutions
    return CodeRecord(
        id=f"{source}/{index}",
        problem=problem,
        tests=[CodeTest("check", check)],
        starter_code=starter,
        entry_point=target or entry_point_from_starter(starter),
        source=source,
        reference_solution=reference if isinstance(reference, str) else None,
    )


def from_codeforces(row: dict, source: str, index: int) -> CodeRecord:
    problem = require_text(row, "problem")
    return CodeRecord(
        id=f"{source}/{index}", problem=problem, tests=_io_tests(row, typed=False), time_limit=_time_limit(problem),
        source=source,
    )


def from_livecodebench(row: dict, source: str, index: int) -> CodeRecord:
    problem = require_text(row, "problem")
    starter = require(row, "starter_code", str, optional=True) or ""
    tests = _io_tests(row, typed=True)
    entry_point = entry_point_from_starter(starter)
    if entry_point is None and any(t.kind == "functional" for t in tests):
        raise DataError(
            "functional tests need a 'def name(' in starter_code to name the function", field="starter_code"
        )
    return CodeRecord(
        id=f"{source}/{index}",
        problem=problem,
        tests=tests,
        starter_code=starter,
        entry_point=entry_point,
        time_limit=_time_limit(problem),
        source=source,
        meta=_contest_date(row),
    )


def _io_tests(row: dict, *, typed: bool) -> list[CodeTest]:
    """``tests: [{input, output}]`` as stdin tests; ``typed``: each item's ``testtype`` (stdin or functional,
    default stdin) is its kind."""
    tests = []
    for i, item in enumerate(_test_list(row)):
        if not isinstance(item, dict):
            raise DataError(f"expected an object, got {type(item).__name__}", field=f"tests[{i}]")
        kind = item.get("testtype", "stdin") if typed else "stdin"
        if kind not in ("stdin", "functional"):
            raise DataError(f"{kind!r} is not one of 'stdin', 'functional'", field=f"tests[{i}].testtype")
        tests.append(CodeTest("stdin" if kind == "stdin" else "functional", _io_text(item, "input", i), _io_text(item, "output", i)))
    return tests


def _contest_date(row: dict) -> dict:
    """LiveCodeBench's release files date each problem (``contest_date``, ISO 8601, e.g. "2023-08-21T00:00:00"):
    kept as ``meta["contest_date"]`` ("YYYY-MM-DD") for evaluation windows. Rows without one get no date."""
    value = require(row, "contest_date", str, optional=True)
    if value is None:
        return {}
    try:
        return {"contest_date": datetime.date.fromisoformat(value[:10]).isoformat()}
    except ValueError:
        raise DataError(f"expected an ISO date (YYYY-MM-DD...), got {value!r}", field="contest_date") from None


def from_record(row: dict, source: str, index: int) -> Record:
    return record_from_dict(row)


FORMATS: dict[str, Converter] = {
    "record": from_record,
    **MATH_LAYOUTS,
    "humaneval": from_humaneval,
    "leetcode": from_leetcode,
    "codeforces": from_codeforces,
    "livecodebench": from_livecodebench,
}


# --- detection -----------------------------------------------------------------------------------------------


def detect_row_format(row: Any) -> str | None:
    """The format whose signature keys ``row`` has, or ``None``."""
    if not isinstance(row, dict):
        return None
    keys = set(row)
    if "domain" in keys:
        return "record"
    if {"task_id", "prompt", "test", "entry_point"} <= keys:
        return "humaneval"
    if "tests" in keys:
        if "starter_code" in keys:
            return "livecodebench"
        tests = row["tests"]
        if isinstance(tests, str):
            tests = "functional" if '"functional"' in tests[:50] else []
        return "leetcode" if isinstance(tests, dict | str) else "codeforces"
    if "problem" in keys or "answer" in keys:
        if "unique_id" in keys:
            return "math500"
        if "url" in keys:
            return "amc"
        if {"year", "problem_number"} <= keys:
            return "aime"
        if "type" in keys:
            return "math_train"
        return "problem_answer"
    return None


def detect_format(rows: list[Any]) -> str | None:
    """Majority format over the given sample rows (malformed rows do not decide), or ``None``."""
    votes = Counter(f for f in map(detect_row_format, rows) if f is not None)
    return votes.most_common(1)[0][0] if votes else None
