"""Code rewards on public benchmarks through the real sandbox: HumanEval's 164 canonical solutions, the
LeetCode reference solutions, LiveCodeBench problems (functional tests named from the starter code, stdin
tests) and the peers' cases of ``eval/code_reward_cases.jsonl``; broken and reward-hacking versions fail."""

from __future__ import annotations

import gzip
import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from srpo_mcore.rewards.code_reward import (
    entry_point_from_starter,
    parse_ground_truth,
    return_value_matches,
    score_code,
    score_program,
    stdout_matches,
)
from srpo_mcore.rewards.sandbox import Sandbox, SandboxLimits

LIMITS = SandboxLimits(cpu_seconds=2.0, wall_seconds=4.0, total_wall_seconds=30.0, memory_mb=1024,
                       output_bytes=1 << 20, max_processes=16, file_size_mb=4, tmpfs_mb=16)

# Appended to a correct program: the function under test returns a slightly different value.
SPOIL = """
def _spoil(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + 1
    if isinstance(v, str):
        return v + "?"
    if isinstance(v, list):
        return v + [None]
    if isinstance(v, tuple):
        return v + (None,)
    return "spoiled"
"""

# Appended: the function returns an object that claims to equal anything.
ALWAYS_EQUAL = """
class _AlwaysEqual:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    def __abs__(self):
        return 0
    def __sub__(self, other):
        return self
    def __lt__(self, other):
        return True
"""


@pytest.fixture(scope="module")
def box(bwrap_available):
    with Sandbox(LIMITS, backend="bwrap") as sandbox:
        yield sandbox


def _parallel(fn, items):
    with ThreadPoolExecutor(2) as ex:
        return list(ex.map(fn, items))


def _humaneval(shared_data):
    with gzip.open(shared_data / "code" / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def _he_truth(row):
    return {"tests": [{"kind": "check", "input": row["test"], "output": ""}], "entry_point": row["entry_point"]}


def _fenced(program: str) -> str:
    return f"<think>\nI will implement it.\n</think>\nHere it is:\n```python\n{program}\n```\n"


def test_humaneval_canonical_solutions_pass(box, shared_data):
    rows = _humaneval(shared_data)
    scores = _parallel(lambda r: score_code(_fenced(r["prompt"] + r["canonical_solution"]), _he_truth(r), box), rows)
    failed = [(r["task_id"], s.status, s.message[:200]) for r, s in zip(rows, scores) if s.accuracy != 1.0]
    assert not failed and len(rows) == 164


def test_humaneval_broken_and_hacking_solutions_fail(box, shared_data):
    rows = _humaneval(shared_data)

    def spoiled(r):
        ep = r["entry_point"]
        wrapper = f"{SPOIL}\n_real = {ep}\ndef {ep}(*a, **k):\n    return _spoil(_real(*a, **k))\n"
        return score_code(_fenced(r["prompt"] + r["canonical_solution"] + wrapper), _he_truth(r), box)

    def hacking(r):
        ep = r["entry_point"]
        return score_code(_fenced(f"{ALWAYS_EQUAL}\ndef {ep}(*a, **k):\n    return _AlwaysEqual()\n"),
                          _he_truth(r), box)

    passed = [r["task_id"] for r, s in zip(rows, _parallel(spoiled, rows)) if s.accuracy]
    assert not passed
    hacks = _parallel(hacking, rows)
    assert not [r["task_id"] for r, s in zip(rows, hacks) if s.accuracy]
    assert all(s.status == "runtime_error" for s in hacks)  # rejected as a non-plain return value


def _leetcode_truth(test_source: str) -> dict:
    """The raw LeetCode test: ``def check(candidate)`` and a trailing ``check(Solution().f)`` call, which
    ``parse_ground_truth`` turns into the entry point."""
    return {"tests": [{"kind": "check", "input": test_source, "output": ""}]}


NEEDS_PACKAGE = {("leetcode_more.json", 26): "imports sortedcontainers, which the sandbox's standard library lacks"}


@pytest.mark.parametrize("name", ["leetcode_test.json", "leetcode_more.json"])
def test_leetcode_reference_solutions_pass(box, shared_data, name):
    rows = json.loads((shared_data / "code" / name).read_text())
    scores = _parallel(lambda r: score_program(r["solutions"], _leetcode_truth(r["tests"]["functional"]), box), rows)
    failed = [(i, s.status, s.message[:200]) for i, s in enumerate(scores)
              if s.accuracy != 1.0 and (name, i) not in NEEDS_PACKAGE]
    assert not failed
    for (file, i), why in NEEDS_PACKAGE.items():
        if file == name:
            assert scores[i].status == "runtime_error" and "sortedcontainers" in scores[i].message, why


def test_leetcode_broken_solutions_fail(box, shared_data):
    rows = json.loads((shared_data / "code" / "leetcode_test.json").read_text())

    def spoiled(r):
        truth = _leetcode_truth(r["tests"]["functional"])
        method = re.search(r"check\(Solution\(\)\.(\w+)\)\s*$", r["tests"]["functional"]).group(1)
        wrapper = (f"{SPOIL}\n_Real = Solution\nclass Solution(_Real):\n    def {method}(self, *a, **k):\n"
                   f"        return _spoil(_Real.{method}(self, *a, **k))\n")
        return score_program(r["solutions"] + wrapper, truth, box)

    assert not [i for i, s in enumerate(_parallel(spoiled, rows)) if s.accuracy]


# (solution, broken solution) per LiveCodeBench sample row; written for this test from the statements.
LCB_SOLUTIONS = {
    2: ("class Solution:\n    def punishmentNumber(self, n: int) -> int:\n"
        "        def ok(s, target):\n"
        "            if not s:\n                return target == 0\n"
        "            return any(ok(s[k:], target - int(s[:k])) for k in range(1, len(s) + 1))\n"
        "        return sum(i * i for i in range(1, n + 1) if ok(str(i * i), i))\n",
        "range(1, n + 1) if", "range(2, n + 1) if"),
    4: ("class Solution:\n    def removeTrailingZeros(self, num: str) -> str:\n        return num.rstrip('0')\n",
        "rstrip('0')", "rstrip('1')"),
    9: ("class Solution:\n    def distanceTraveled(self, mainTank: int, additionalTank: int) -> int:\n"
        "        km = 0\n        while mainTank >= 5:\n            mainTank -= 5\n            km += 50\n"
        "            if additionalTank:\n                additionalTank -= 1\n                mainTank += 1\n"
        "        return km + 10 * mainTank\n", "km + 10 *", "km + 9 *"),
    28: ("bits = input().split()\nprint(sum(int(b) << i for i, b in enumerate(bits)))\n", "<< i", "<< (i + 1)"),
    29: ("n = int(input())\na = list(map(int, input().split()))\nprint(*[sum(a[7 * i:7 * i + 7]) for i in range(n)])\n",
         "7 * i + 7", "7 * i + 6"),
    44: ("input()\ns = input()\ni = s.find('ABC')\nprint(i + 1 if i >= 0 else -1)\n", "i + 1 if", "i if"),
    46: ("n = int(input())\nfor p in (2, 3):\n    while n % p == 0:\n        n //= p\nprint('Yes' if n == 1 else 'No')\n",
         "'Yes'", "'YES'"),
}


def _lcb_truth(row) -> dict:
    tests = [{"kind": "stdin" if t["testtype"] == "stdin" else "functional", "input": t["input"],
              "output": t["output"]} for t in row["tests"]]
    return {"tests": tests, "starter_code": row["starter_code"]}  # the function name comes from the starter


def test_livecodebench_functional_and_stdin(box, shared_data):
    rows = json.loads((shared_data / "code" / "livecodebench_sample.json").read_text())
    for i, (program, old, new) in LCB_SOLUTIONS.items():
        truth = _lcb_truth(rows[i])
        good = score_code(_fenced(program), truth, box)
        assert good.accuracy == 1.0 and good.pass_fraction == 1.0, (i, good)
        assert old in program
        bad = score_code(_fenced(program.replace(old, new)), truth, box)
        assert bad.accuracy == 0.0 and bad.status == "wrong_answer", (i, bad)


def test_entry_point_from_starter():
    assert entry_point_from_starter("class Solution:\n    def minCost(self, s: str) -> int:\n ") == "Solution().minCost"
    assert entry_point_from_starter("def solve(a, b):\n    pass") == "solve"
    assert parse_ground_truth({"tests": [{"kind": "functional", "input": "1", "output": "1"}],
                               "starter_code": "def f(x):\n"}).entry_point == "f"
    with pytest.raises(ValueError):
        parse_ground_truth({"tests": [{"kind": "functional", "input": "1", "output": "1"}]})
    with pytest.raises(ValueError):
        parse_ground_truth({"tests": [{"kind": "check", "input": "def check(c):\n    assert c(1)\n"}]})
    split = parse_ground_truth({"tests": [{"kind": "check", "input": "def check(c):\n    assert c(1)\n\n\ncheck(Solution().f)\n"}]})
    assert split.tests[0].entry_point == "Solution().f" and "check(Solution" not in split.tests[0].input
    with pytest.raises(ValueError):
        parse_ground_truth({"tests": [{"kind": "yaml", "input": ""}]})


# Tests for the peer cases that came without any ("tests": null): the worked examples of the public problem
# statements, written out here; None = not reproducible here (with the reason).
PEER_TESTS = {
    "verl-sf-lcb-occurrencesOfElement": ("Solution().occurrencesOfElement", [
        ("functional", "[1, 3, 1, 7]\n[1, 3, 2, 4]\n1", "[0, -1, 2, -1]"), ("functional", "[1, 2, 3]\n[10]\n5", "[-1]")]),
    "lcb-fewshot-unequalTriplets": ("Solution().unequalTriplets", [
        ("functional", "[4, 4, 2, 4, 3]", "3"), ("functional", "[1, 1, 1, 1, 1]", "0")]),
    "lcb-fewshot-appendCharacters": ("Solution().appendCharacters", [
        ("functional", '"coaching"\n"coding"', "4"), ("functional", '"abcde"\n"a"', "0"),
        ("functional", '"z"\n"abcde"', "5")]),
    "rllm-lcb-numberOfEmployeesWhoMetTarget": ("Solution().numberOfEmployeesWhoMetTarget", [
        ("functional", "[0, 1, 2, 3, 4]\n2", "3"), ("functional", "[5, 1, 4, 2, 2]\n6", "0")]),
    "rllm-taco-is-anagram": ("is_anagram", [
        ("functional", '"foefet"\n"toffee"', "true"), ("functional", '"Buckethead"\n"DeathCubeK"', "true"),
        ("functional", '"dumble"\n"bumble"', "false")]),
    "rllm-taco-total": ("total", [
        ("functional", "[1, 2, 3, 4, 5]", "48"), ("functional", "[-1, -1, -1]", "-4"), ("functional", "[7]", "7")]),
    "rllm-leetcode-minOperations": ("Solution().minOperations", [
        ("check", "def check(candidate):\n    assert candidate(nums=[3,1,5,4,2], k=2) == 4\n"
                  "    assert candidate(nums=[3,1,5,4,2], k=5) == 5\n    assert candidate(nums=[3,2,5,3,1], k=3) == 4\n",
         "")]),
    "rllm-leetcode-minOperations-prose": ("Solution().minOperations", [
        ("check", "def check(candidate):\n    assert candidate(nums=[3,1,5,4,2], k=2) == 4\n", "")]),
    "verl-sf-kodcode-merge-intervals-first2": ("merge_intervals", [
        ("check", "def check(f):\n    assert f([(1, 3), (2, 6), (8, 10)]) == [(1, 6), (8, 10)]\n", ""),
        ("check", "def check(f):\n    assert f([]) == []\n", "")]),
    "verl-sf-kodcode-merge-intervals": ("merge_intervals", [
        ("check", "def check(f):\n    assert f([(1, 3), (2, 6), (8, 10)]) == [(1, 6), (8, 10)]\n", ""),
        ("check", "def check(f):\n    assert f([(1, 4), (4, 5)]) == [(5, 5)]\n", "")]),  # a wrong assert
    "rllm-kodcode-longest-subsequence": ("longest_subsequence", [
        ("check", "def check(f):\n    assert f([1, 2, 3, 2, 1]) == 5\n    assert f([]) == 0\n"
                  "    assert f([1, 3, 5]) == 1\n", "")]),
    "lcb-main-mostFrequentIDs-slow": ("Solution().mostFrequentIDs", [
        # One ID raised to 1e5 and removed again, 10k times: the walk-down of max_freq costs ~1e9 steps.
        ("functional", json.dumps([1] * 20000) + "\n" + json.dumps([100000, -100000] * 10000),
         json.dumps([100000, 0] * 10000))]),
}


def test_peer_code_cases(box, shared_data):
    """The 34 peer cases: 22 carry tests; the other 12 get the worked examples above. Labels that depend on a
    peer's options: verl's timeouts (5, 10 and 15 s) are longer than ours (2 CPU s, 4 wall s), which only makes
    the sleeping programs fail sooner; verl feeds a null stdin as ""; the prose-before-code response fails
    here at extraction of a fenced block (rllm) or, used whole as the program, with a SyntaxError."""
    rows = [json.loads(line) for line in (shared_data / "eval" / "code_reward_cases.jsonl").read_text().splitlines()]
    assert len(rows) == 34

    def run(row):
        if row["tests"] is not None:
            truth = {"tests": [{"kind": "stdin", "input": t["input"], "output": t["output"]} for t in row["tests"]]}
        else:
            entry, tests = PEER_TESTS[row["problem_id"]]
            truth = {"tests": [{"kind": k, "input": i, "output": o} for k, i, o in tests], "entry_point": entry}
        return score_program(row["program"], truth, box)

    scores = _parallel(run, rows)
    wrong = [(r["problem_id"], s.status, s.message[:120]) for r, s in zip(rows, scores)
             if bool(s.accuracy) is not r["expected_pass"]]
    assert not wrong
    by_id = {r["problem_id"]: s for r, s in zip(rows, scores)}
    assert by_id["verl-sf-timeout"].status == "timeout"
    assert by_id["lcb-main-mostFrequentIDs-slow"].status == "timeout"
    assert by_id["verl-sf-kodcode-merge-intervals"].test_statuses == ["ok", "wrong_answer"]
    assert by_id["verl-sf-highload-wrong-answers"].pass_fraction < 1.0
    # Scored as a response (not as a bare program), the prose-first text has no fenced code at all.
    prose = next(r for r in rows if r["problem_id"] == "rllm-leetcode-minOperations-prose")
    entry, tests = PEER_TESTS[prose["problem_id"]]
    truth = {"tests": [{"kind": k, "input": i, "output": o} for k, i, o in tests], "entry_point": entry}
    assert score_code(prose["program"], truth, box).status == "no_code"


@pytest.mark.parametrize("actual, expected, ok", [
    ("1 2\n3\n", "1 2 3", True), ("  42  \n\n", "42\n", True), ("Yes", "yes", False), ("1 2", "1 2 3", False),
    ("0.3333333", "0.333333333", True), ("0.334", "0.333", False), ("1000000001", "1000000000", False),
    ("1e-9", "0.000000001", True), ("nan", "0.5", False), ("", "", True), ("x", "", False),
])
def test_stdout_comparison(actual, expected, ok):
    assert stdout_matches(actual, expected, 1e-6) is ok


@pytest.mark.parametrize("value, expected, ok", [
    ("[1, 2]", "[1, 2]", True), ("[1, 2]", "[2, 1]", False), ("0.30000000000000004", "0.3", True),
    ("true", "true", True), ("1", "true", True),  # Python's == (as LiveCodeBench judges)
    ("0", "true", False), ('"a"', '"a"', True), ('{"a": [1]}', '{"a": [1]}', True),
    ("[[1, 2], [3]]", "[[1, 2], [3]]", True), ("not json", "1", False), ("2", "2.0", True),
])
def test_return_value_comparison(value, expected, ok):
    assert return_value_matches(value, expected, 1e-6) is ok


def test_harness_details(box):
    """Prints do not disturb functional results; exiting early is a failure; tests of one response are
    independent processes; a timeout stops the remaining tests."""
    program = ("import sys\ncount = 0\ndef f(x):\n    global count\n    count += 1\n    print('noise')\n"
               "    if x == 0:\n        sys.exit(0)\n    if x < 0:\n        while True:\n            pass\n"
               "    return [x, count]\n")
    tests = {"tests": [{"kind": "functional", "input": "1", "output": "[1, 1]"},
                       {"kind": "functional", "input": "2", "output": "[2, 1]"},  # count restarts: new process
                       {"kind": "functional", "input": "0", "output": "null"},
                       {"kind": "functional", "input": "-1", "output": "null"},
                       {"kind": "functional", "input": "3", "output": "[3, 1]"}],
             "entry_point": "f"}
    s = score_program(program, tests, box)
    assert s.test_statuses == ["ok", "ok", "runtime_error", "timeout", "not_run"], s
    assert s.pass_fraction == pytest.approx(0.4) and s.accuracy == 0.0


def test_data_layer_records_are_ground_truth(box):
    """Contract with ``srpo_mcore.data.records``: a ``CodeRecord`` (or its dict form) is a code ground truth."""
    from srpo_mcore.data.records import CodeRecord, CodeTest

    record = CodeRecord(id="add", problem="Add.", tests=[CodeTest("functional", "[1, 2]\n3", "[4, 5]"),
                                                         CodeTest("functional", "[]\n1", "[]")],
                        starter_code="class Solution:\n    def add(self, nums: List[int], k: int) -> List[int]:\n")
    program = "class Solution:\n    def add(self, nums: List[int], k: int) -> List[int]:\n        return [x + k for x in nums]\n"
    for truth in (record, record.to_dict()):
        assert score_program(program, truth, box).accuracy == 1.0
    assert score_program(program.replace("x + k", "x - k"), record, box).pass_fraction == 0.5
