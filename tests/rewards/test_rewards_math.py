"""Math rewards: answer extraction, the exact fast paths, and verification with the real math-verify in the
worker pool (deadlines, a stuck worker replaced, memory cap). Expected labels are what a human grader says;
the peer cases come from ``eval/math_answer_cases.jsonl``."""

from __future__ import annotations

import json
import os
import signal
import time
from fractions import Fraction

import pytest

from srpo_mcore.rewards.math_answer import (
    extract_answer,
    integer_string,
    last_boxed,
    normalize_gold,
    quick_verdict,
    rational_value,
)
from srpo_mcore.rewards.math_verify_pool import MathVerifier

TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def verifier():
    with MathVerifier(workers=2, timeout_s=TIMEOUT_S, memory_mb=2048, cache_size=1000) as v:
        yield v


def check(verifier: MathVerifier, gold, response: str) -> bool:
    return verifier.verify(normalize_gold(gold), extract_answer(response)).correct


# -- extraction (no math-verify) -------------------------------------------------------------------------------

@pytest.mark.parametrize("response, expected", [
    ("so \\boxed{3} then \\boxed{5}.", "5"),  # several boxes: the last one counts
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),  # nested braces
    ("\\fbox{42}", "42"),
    ("the result is \\boxed 7 done", "7"),
    ("$\\boxed{x^{2}}$.", "x^{2}"),
    ("<think>maybe \\boxed{1}</think> final: \\boxed{2}", "2"),  # reasoning boxes do not count
    ("<think>\\boxed{1}</think> no box here", None),
    ("<think>unfinished \\boxed{1}", None),  # reasoning never closed
    ("The answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
    ("**Final Answer:** 12.", "12"),
    ("... so the answer is 0.5. Done.", "0.5"),
    ("\\boxed{}", None),  # empty box: no answer
    ("\\boxed{1", None),  # unterminated
    ("<|begin_of_box|>9<|end_of_box|>", "9"),
    ("no answer at all", None),
    ("", None),
])
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


def test_require_think_close():
    assert extract_answer("\\boxed{4}", require_think_close=True) is None
    assert extract_answer("r</think>\\boxed{4}", require_think_close=True) == "4"


def test_last_boxed_ignores_lookalikes():
    assert last_boxed("\\boxedx{1} \\boxed{2}") == "2"
    assert last_boxed("\\{ \\} \\boxed{\\{1,2\\}}") == "\\{1,2\\}"


@pytest.mark.parametrize("gold, expected", [
    (142.0, "142"), (25, "25"), (0.5, "0.5"), ("\\boxed{033}", "033"), ("$\\frac12$", "\\frac12"),
    ("", None), ("  ", None), ("\\boxed{}", None), ("\\boxed", None), (None, None), (True, None),
])
def test_normalize_gold(gold, expected):
    assert normalize_gold(gold) == expected


@pytest.mark.parametrize("gold, answer, verdict", [
    ("025", "25", True), ("+033", "33", True), ("-0", "0", True), ("000", "0", True), ("142.0", "142", True),
    ("1000", "1,000", True), ("1000", "1{,}000", True), ("25", "52", False), ("-5", "5", False),
    ("\\frac{1}{2}", "\\dfrac{1}{2}", True), ("\\left(1,2\\right)", "(1, 2)", True),
    ("2", "2,3", None), ("\\frac{1}{2}", "0.5", None), ("25", "25\\%", None), ("9" * 300, "9" * 300, True),
    # exact rationals
    ("\\frac{1}{2}", "\\frac{2}{4}", True), ("\\frac{3}{4}", "\\frac{3}{5}", False), ("63/400", "\\frac{63}{400}", True),
    ("-\\frac{3}{4}", "\\frac{-3}{4}", True), ("\\frac12", "1/2", True), ("2", "\\frac{4}{2}", True),
    ("\\frac{1}{2}", "-\\frac{1}{2}", False), ("\\frac{1}{0}", "1", None), ("\\frac{1}{2}+1", "\\frac{3}{2}", None),
])
def test_quick_verdict(gold, answer, verdict):
    assert quick_verdict(gold, answer) is verdict


def test_integer_string_and_rational_value():
    assert integer_string("007") == "7" and integer_string("-0.00") == "0" and integer_string("1.5") is None
    assert rational_value("\\dfrac{6}{8}") == Fraction(3, 4) and rational_value("0.75") is None


# -- verification with math-verify -----------------------------------------------------------------------------

TRICKY = [
    # fractions vs decimals
    ("\\frac{1}{2}", "0.5", True), ("-\\frac{3}{4}", "-0.75", True), ("1.5", "\\frac{3}{2}", True),
    ("\\frac{1}{3}", "0.33", False), ("0.3333", "\\frac{1}{3}", False),
    # intervals
    ("(-\\infty, 3]", "(-\\infty,3]", True), ("(-\\infty, 3]", "(-\\infty, 3)", False),
    ("[1,2) \\cup (3,4]", "[1,2)\\cup(3,4]", True), ("[1,2) \\cup (3,4]", "[1,2]\\cup(3,4]", False),
    # sets and tuples
    ("\\{1,2,3\\}", "\\{3,2,1\\}", True), ("\\{1,2\\}", "\\{1,2,3\\}", False), ("(1,2)", "(2,1)", False),
    # units, degrees, currency, percent
    ("5", "5\\text{ cm}", True), ("10\\text{ meters}", "10", True), ("90^\\circ", "90", True),
    ("18.90", "\\$18.90", True),
    # algebra
    ("x^2+2x+1", "(x+1)^2", True), ("3\\sqrt{3}", "\\sqrt{27}", True), ("\\sqrt{2}/2", "\\frac{1}{\\sqrt{2}}", True),
    ("2\\pi", "6.28", False), ("3", "x=3", True),
    # leading zeros (AIME)
    ("025", "25", True), ("007", "7", True), ("025", "52", False),
]


@pytest.mark.parametrize("gold, answer, expected", TRICKY)
def test_tricky_answers(verifier, gold, answer, expected):
    response = f"<think>work</think> The answer is $\\boxed{{{answer}}}$."
    assert check(verifier, gold, response) is expected


def test_several_boxes_last_counts(verifier):
    response = "First I thought \\boxed{3}, but correcting the sign: \\boxed{5}"
    assert check(verifier, "5", response) is True
    assert check(verifier, "3", response) is False


@pytest.mark.xfail(strict=True, reason="math-verify 0.9.0 compares these numerically after rounding (known "
                                       "false positives, platform notes): both sides verify as equal")
@pytest.mark.parametrize("gold, answer", [("\\frac{1}{2004!}", "\\frac{1}{2006!}"),
                                          ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}")])
def test_known_false_positives(verifier, gold, answer):
    assert check(verifier, gold, f"\\boxed{{{answer}}}") is False


def test_peer_cases(verifier, shared_data):
    """All 56 answer-checking cases gathered from verl, Qwen2.5-Math, TRL, open-r1 and rllm. Labels that depend
    on a peer's own options and that we meet as well: TRL's reasoning-accuracy reward wants the answer after
    ``</think>`` (so a box inside the reasoning, or no box at all, scores 0); Qwen2.5-Math's grader accepts
    equations equal up to a factor (``34x+45y-20z+100=0`` vs its negation) and trigonometric identities;
    rllm filters empty gold answers (they score 0)."""
    rows = [json.loads(line) for line in (shared_data / "eval" / "math_answer_cases.jsonl").read_text().splitlines()]
    pairs = [(normalize_gold(r["gold"]), extract_answer(r["response"])) for r in rows]
    verdicts = verifier.verify_many(pairs)
    wrong = [(r["source"], r["gold"], r["response"][-80:]) for r, v in zip(rows, verdicts)
             if v.correct is not r["expected"]]
    assert not wrong, wrong
    assert len(rows) == 56


def test_never_raises_on_garbage(verifier):
    garbage = [("\\frac{", "}}}{{"), ("1", "\\frac{1}{0}"), ("x", "\\\\\\"), ("1", "\x00\x01"), ("(", ")"),
               ("\\sqrt{-1}", "i"), ("1", "\\begin{pmatrix}1"), ("\\infty", "-\\infty")]
    verdicts = verifier.verify_many(garbage)
    assert all(isinstance(v.correct, bool) for v in verdicts)
    assert verdicts[-1].correct is False and verdicts[1].correct is False
    empty = verifier.verify_many([(None, "1"), ("1", None), ("", "")])
    assert [(v.correct, v.status) for v in empty] == [(False, "no_gold"), (False, "no_answer"), (False, "no_gold")]


# -- deadlines, replacement, limits ----------------------------------------------------------------------------

def test_pathological_inputs_time_out_and_pool_recovers():
    """A huge power cannot be interrupted by math-verify's SIGALRM (it runs in C): the outer deadline kills the
    worker, the task scores 0, a fresh worker takes over and later verifications are right."""
    with MathVerifier(workers=2, timeout_s=2.0, cache_size=0, max_answer_chars=0) as v:
        v.wait_ready()
        long_answer = "1+" * 50_000 + "1"  # 100k characters
        verdicts = v.verify_many([("1", "9^{9^{9^9}}"), ("7", long_answer)])
        assert [x.correct for x in verdicts] == [False, False]
        assert all(x.seconds < 2.0 + 1.0 for x in verdicts), verdicts  # each within its deadline
        assert v.restarts >= 1 and verdicts[0].status == "timeout"
        assert v.verify("\\frac{1}{2}", "0.5").correct is True
        assert v.verify("\\frac{1}{2}", "0.6").correct is False


def test_long_answers_rejected_without_verification(verifier):
    t = time.monotonic()
    v = verifier.verify("7", "1+" * 50_000 + "1")
    assert v.correct is False and v.status == "answer_too_long" and time.monotonic() - t < 0.5


def test_killed_worker_is_replaced():
    with MathVerifier(workers=2, timeout_s=TIMEOUT_S, cache_size=0) as v:
        v.wait_ready()
        for w in v._workers:
            os.kill(w.proc.pid, signal.SIGKILL)
        verdicts = v.verify_many([("2", "\\sqrt{4}"), ("\\frac{1}{2}", "0.5"), ("3", "\\sqrt{8}")])
        assert [x.correct for x in verdicts] == [True, True, False]
        assert v.restarts == 2


def test_worker_memory_is_capped():
    with MathVerifier(workers=1, timeout_s=TIMEOUT_S, memory_mb=1024) as v:
        assert v.verify("2", "\\sqrt{4}").correct is True
        pid = v._workers[0].proc.pid
        limits = open(f"/proc/{pid}/limits").read()
        line = next(x for x in limits.splitlines() if x.startswith("Max address space"))
        assert str(1024 << 20) in line


def test_cache_and_batch_duplicates(verifier):
    pair = ("\\frac{2}{4}", "0.5")
    first = verifier.verify_many([pair, pair, pair])
    assert [x.correct for x in first] == [True, True, True]
    assert verifier.verify(*pair).status == "cached"
