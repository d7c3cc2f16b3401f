"""Code reward: run a response's program against its tests in the sandbox, compare outputs outside it.

Ground truth follows the data layer's test contract (``srpo_mcore/data/records.py``): a ``CodeRecord`` or
its dict form ``{"tests": [{"kind", "input", "output"}, ...], "entry_point": ..., "time_limit": ...}``:

* ``stdin`` - the program reads ``input``; its stdout must match ``output`` token by token (whitespace and
  blank lines do not matter, as with judges' default checkers); where the expected token is a decimal
  number, within ``float_tolerance`` (relative or absolute);
* ``functional`` - ``input`` holds one JSON argument per line; ``entry_point`` (e.g. ``Solution().f``) is
  called in the program's namespace, after the usual import prelude (``List``, ``defaultdict``, ``heapq``,
  ...); the return value (JSON; tuples as lists) must equal ``json.loads(output)``;
* ``check`` - ``input`` defines ``check(candidate)`` (HumanEval, LeetCode); ``check(<entry_point>)`` is called
  (a trailing ``check(<target>)`` line in the source is taken as the entry point); passing means it returns.
  Return values of the candidate must be plain data: an object that overrides ``__eq__`` cannot fake a pass.

All tests of one response run in one sandbox launch. Expected outputs of ``stdin`` and ``functional`` tests
never enter the sandbox; ``check`` tests carry their assertions inside by nature.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from srpo_mcore.rewards.format import extract_code
from srpo_mcore.rewards.sandbox import HarnessTest, Sandbox, TestOutcome

TEST_KINDS = ("stdin", "functional", "check")

# What LeetCode/LiveCodeBench-style solutions may use without importing it (typing names first, so that
# collections' classes win over typing's aliases of the same name).
PRELUDE = """\
from typing import *
import bisect, collections, copy, functools, heapq, itertools, math, operator, random, re, string, sys
from bisect import bisect, bisect_left, bisect_right, insort, insort_left, insort_right
from collections import Counter, OrderedDict, defaultdict, deque, namedtuple
from functools import cache, cmp_to_key, lru_cache, partial, reduce
from heapq import heapify, heappop, heappush, heappushpop, heapreplace, nlargest, nsmallest
from itertools import (accumulate, chain, combinations, combinations_with_replacement, count, cycle, groupby,
                       islice, pairwise, permutations, product, repeat, starmap, zip_longest)
from math import ceil, comb, factorial, floor, gcd, inf, isqrt, lcm, log, log2, log10, perm, sqrt
from string import ascii_letters, ascii_lowercase, ascii_uppercase, digits, punctuation, whitespace


class ListNode:
    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next


class TreeNode:
    def __init__(self, val=0, left=None, right=None):
        self.val = val
        self.left = left
        self.right = right


def list_node(values):
    head = None
    for v in reversed(list(values)):
        head = ListNode(v, head)
    return head


def tree_node(values):
    values = list(values)
    if not values or values[0] is None:
        return None
    root = TreeNode(values[0])
    level, i = [root], 1
    while level and i < len(values):
        nxt = []
        for node in level:
            for side in ("left", "right"):
                if i < len(values) and values[i] is not None:
                    child = TreeNode(values[i])
                    setattr(node, side, child)
                    nxt.append(child)
                i += 1
        level = nxt
    return root


def is_same_list(a, b):
    while a is not None and b is not None:
        if a.val != b.val:
            return False
        a, b = a.next, b.next
    return a is None and b is None


def is_same_tree(a, b):
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x is None or y is None:
            if x is not y:
                return False
            continue
        if x.val != y.val:
            return False
        stack.append((x.left, y.left))
        stack.append((x.right, y.right))
    return True
"""


@dataclass(frozen=True)
class CodeCase:
    kind: str
    input: str
    output: str = ""
    entry_point: str | None = None  # a check test's own target, split off its trailing ``check(...)`` call


@dataclass(frozen=True)
class CodeGroundTruth:
    tests: tuple[CodeCase, ...]
    entry_point: str | None = None
    time_limit: float | None = None


def entry_point_from_starter(starter_code: str) -> str | None:
    """LiveCodeBench names no function: take it from the starter code (``Solution().name`` for a class)."""
    name = re.search(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", starter_code or "", re.M)
    if name is None:
        return None
    return f"Solution().{name.group(1)}" if re.search(r"^class\s+Solution\b", starter_code, re.M) else name.group(1)


_CHECK_CALL = re.compile(r"\n\s*check\((?P<target>[^\n]+)\)\s*$")


def _split_check_call(case: CodeCase) -> CodeCase:
    m = _CHECK_CALL.search("\n" + case.input.rstrip())
    if m is None:
        raise ValueError("a check test without an entry_point must end with a check(<target>) call")
    source = ("\n" + case.input.rstrip())[:m.start()].lstrip("\n")
    return CodeCase("check", source, case.output, m.group("target").strip())


def parse_ground_truth(gt: Any) -> CodeGroundTruth:
    """A ``CodeRecord``, its dict form, or a bare list of tests, as :class:`CodeGroundTruth`; without an
    ``entry_point``, one is taken from ``starter_code``."""
    if isinstance(gt, str):
        gt = json.loads(gt)
    if isinstance(gt, (list, tuple)):
        gt = {"tests": gt}
    get = gt.get if isinstance(gt, dict) else (lambda k, d=None: getattr(gt, k, d))
    tests = []
    for t in get("tests", None) or ():
        kind, inp, out = ((t["kind"], t.get("input"), t.get("output")) if isinstance(t, dict)
                          else (t.kind, t.input, t.output))
        if kind not in TEST_KINDS:
            raise ValueError(f"code test kind {kind!r} is not one of {TEST_KINDS}")
        tests.append(CodeCase(kind, "" if inp is None else str(inp), "" if out is None else str(out)))
    entry_point = get("entry_point", None) or entry_point_from_starter(get("starter_code", None) or "")
    if any(t.kind == "functional" for t in tests) and not entry_point:
        raise ValueError("functional tests need an entry_point (e.g. 'Solution().twoSum')")
    if not entry_point:
        # LeetCode style: the test source ends with ``check(Solution().f)``; call it ourselves instead, so
        # that the candidate's return values are checked like any other (see the module docstring).
        tests = [_split_check_call(t) if t.kind == "check" else t for t in tests]
    limit = get("time_limit", None)
    return CodeGroundTruth(tuple(tests), entry_point, float(limit) if limit else None)


# -- output comparison -----------------------------------------------------------------------------------------

def _is_decimal(token: str) -> bool:
    return any(c in token for c in ".eE") and not token.lower().lstrip("+-").startswith(("inf", "nan"))


def _tokens_match(actual: str, expected: str, tol: float) -> bool:
    if actual == expected:
        return True
    if tol <= 0 or not _is_decimal(expected):
        return False
    try:
        a, e = float(actual), float(expected)
    except ValueError:
        return False
    return math.isfinite(a) and abs(a - e) <= tol * max(1.0, abs(e))


def stdout_matches(actual: str, expected: str, float_tolerance: float = 1e-6) -> bool:
    """Judge-style comparison: same whitespace-separated tokens (decimals within tolerance)."""
    if actual == expected:
        return True
    a, e = actual.split(), expected.split()
    return len(a) == len(e) and all(_tokens_match(x, y, float_tolerance) for x, y in zip(a, e))


def _values_match(a: Any, e: Any, tol: float) -> bool:
    if isinstance(a, bool) or isinstance(e, bool):
        return a == e
    if isinstance(a, (int, float)) and isinstance(e, (int, float)):
        if isinstance(a, float) or isinstance(e, float):
            return a == e or (tol > 0 and math.isfinite(a) and abs(a - e) <= tol * max(1.0, abs(e)))
        return a == e
    if isinstance(a, list) and isinstance(e, (list, tuple)):
        return len(a) == len(e) and all(_values_match(x, y, tol) for x, y in zip(a, e))
    if isinstance(a, dict) and isinstance(e, dict):
        return a.keys() == e.keys() and all(_values_match(a[k], e[k], tol) for k in a)
    return a == e


def return_value_matches(value_json: str, expected: str, float_tolerance: float = 1e-6) -> bool:
    """A functional test: the (untrusted) JSON return value against the expected JSON."""
    try:
        actual = json.loads(value_json)
    except (ValueError, RecursionError):
        return False
    try:
        wanted = json.loads(expected)
    except ValueError:
        return value_json.strip() == expected.strip()
    try:
        return _values_match(actual, wanted, float_tolerance)
    except RecursionError:
        return False


# -- scoring -------------------------------------------------------------------------------------------------

@dataclass
class CodeScore:
    accuracy: float  # 1.0 when every test passed
    pass_fraction: float
    status: str  # ok | no_code | no_tests | the first failing test's status
    passed: int = 0
    total: int = 0
    test_statuses: list[str] = field(default_factory=list)
    message: str = ""  # the first failure, shortened


def _harness_tests(gt: CodeGroundTruth, cpu_seconds: float | None) -> list[HarnessTest]:
    return [HarnessTest(t.kind, t.input, None if t.kind == "stdin" else (t.entry_point or gt.entry_point),
                        cpu_seconds) for t in gt.tests]


def judge(gt: CodeGroundTruth, outcomes: Sequence[TestOutcome], float_tolerance: float) -> list[str]:
    """Each test's final status: the sandbox's, or ``wrong_answer`` after comparing outputs."""
    statuses = []
    for case, o in zip(gt.tests, outcomes):
        status = o.status
        if status == "ok":
            if case.kind == "stdin" and not stdout_matches(o.stdout, case.output, float_tolerance):
                status = "wrong_answer"
            elif case.kind == "functional" and not return_value_matches(o.value_json or "", case.output,
                                                                        float_tolerance):
                status = "wrong_answer"
        statuses.append(status)
    return statuses


def score_program(program: str | None, ground_truth: Any, sandbox: Sandbox, *, float_tolerance: float = 1e-6,
                  stop_after_timeout: bool = True) -> CodeScore:
    """Run ``program`` against the tests of ``ground_truth`` in one launch."""
    gt = ground_truth if isinstance(ground_truth, CodeGroundTruth) else parse_ground_truth(ground_truth)
    if not gt.tests:
        return CodeScore(0.0, 0.0, "no_tests")
    if not program or not program.strip():
        return CodeScore(0.0, 0.0, "no_code", total=len(gt.tests))
    needs_prelude = any(t.kind != "stdin" for t in gt.tests)
    outcomes, launch_error = sandbox.run_tests(program, _harness_tests(gt, gt.time_limit),
                                               prelude=PRELUDE if needs_prelude else "",
                                               stop_after_timeout=stop_after_timeout)
    statuses = judge(gt, outcomes, float_tolerance)
    passed = sum(s == "ok" for s in statuses)
    total = len(statuses)
    failing = next((k for k, s in enumerate(statuses) if s != "ok"), None)
    status = "ok" if failing is None else statuses[failing]
    message = ""
    if failing is not None:
        o = outcomes[failing]
        message = (launch_error or o.error or o.stderr[-300:] or status)[:500]
    return CodeScore(1.0 if passed == total else 0.0, passed / total, status, passed, total, statuses, message)


def score_code(response: str, ground_truth: Any, sandbox: Sandbox, *, require_think_close: bool = False,
               float_tolerance: float = 1e-6, stop_after_timeout: bool = True) -> CodeScore:
    """Extract the response's program (last ```python block after ``</think>``) and score it."""
    program = extract_code(response, require_think_close=require_think_close)
    return score_program(program, ground_truth, sandbox, float_tolerance=float_tolerance,
                         stop_after_timeout=stop_after_timeout)
