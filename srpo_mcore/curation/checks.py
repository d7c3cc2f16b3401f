"""Answer and test checks, and pass@k difficulty grading, for the curation pipeline.

* ``math_answer_problem``: the gold answer must parse as the math reward parses it: normalised by
  ``rewards.math_answer.normalize_gold`` (``\\boxed{}`` and ``$...$`` removed, ``142.0`` -> ``142``), then
  math-verify on ``\\boxed{gold}``; unlike the reward, without math-verify's string fallback, so that a gold
  that could only ever match verbatim is reported.
* ``code_tests_problem``: tests are runnable as specified: functional inputs/outputs are JSON, check
  programs compile and define ``check``, an entry point is a Python expression.
* ``verify_reference`` / ``solve_rate`` are injected callables (the code sandbox, the vLLM engine + rewards;
  ``hooks.py`` builds both from the real components);
  without them the pipeline reports the step as not checked / skipped.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Sequence

from srpo_mcore.data.records import CodeRecord, MathRecord, Record

VerifyReference = Callable[[Record], bool]
SolveRate = Callable[[Sequence[Record], int], Sequence[float]]


def math_answer_problem(record: MathRecord) -> str | None:
    """Why the gold answer is not verifiable, or ``None`` when math-verify parses it."""
    from math_verify import parse  # heavy import (sympy): only when the check runs

    from srpo_mcore.rewards.math_answer import normalize_gold

    gold = normalize_gold(record.answer)
    if gold is None:
        return "empty gold answer, or an unterminated \\boxed"
    try:
        parsed = parse("\\boxed{" + gold + "}", fallback_mode="no_fallback")
    except Exception as err:  # math-verify raises assorted sympy/lark errors on odd input
        return f"math-verify failed: {type(err).__name__}"
    return None if parsed else "math-verify cannot parse the gold answer"


def code_tests_problem(record: CodeRecord) -> str | None:
    """Why the tests cannot be run as specified, or ``None``."""
    if not record.tests:
        return "no tests"
    if record.entry_point is not None and not _is_expression(record.entry_point):
        return f"entry_point {record.entry_point!r} is not a Python expression"
    for i, test in enumerate(record.tests):
        problem = _test_problem(test.kind, test.input, test.output, record.entry_point)
        if problem:
            return f"tests[{i}]: {problem}"
    return None


def _test_problem(kind: str, given: str, expected: str, entry_point: str | None) -> str | None:
    if kind == "stdin":
        return "empty input and output" if not given.strip() and not expected.strip() else None
    if entry_point is None:
        return f"a {kind} test needs an entry_point"
    if kind == "functional":
        try:
            for line in given.splitlines() or [""]:
                json.loads(line)
            json.loads(expected)
        except json.JSONDecodeError as err:
            return f"functional input/output is not JSON ({err.msg})"
        return None
    try:
        tree = ast.parse(given)
    except SyntaxError as err:
        return f"check program does not compile (line {err.lineno}: {err.msg})"
    if not any(isinstance(n, ast.FunctionDef) and n.name == "check" for n in tree.body):
        return "check program defines no check(candidate)"
    return None


def _is_expression(text: str) -> bool:
    try:
        ast.parse(text, mode="eval")
    except SyntaxError:
        return False
    return True


def grade(solve_rate: float, *, easy_at: float, hard_below: float) -> str:
    """``"easy"`` when ``solve_rate >= easy_at``, ``"hard"`` when ``solve_rate < hard_below``, else medium."""
    if solve_rate >= easy_at:
        return "easy"
    if solve_rate < hard_below:
        return "hard"
    return "medium"


def checked_rates(rates: Sequence[float], count: int) -> list[float]:
    """Validate what an injected ``solve_rate`` returned: one rate in [0, 1] per record."""
    rates = list(rates)
    if len(rates) != count:
        raise ValueError(f"solve_rate returned {len(rates)} rates for {count} records")
    bad = [r for r in rates if not isinstance(r, int | float) or not 0.0 <= r <= 1.0]
    if bad:
        raise ValueError(f"solve_rate returned values outside [0, 1]: {bad[:5]}")
    return [float(r) for r in rates]
