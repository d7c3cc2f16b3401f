"""The real curation hooks (srpo_mcore/curation/hooks.py): reference solutions through the code sandbox (real
bubblewrap runs), math golds parsed as the reward parses them, and the pass@k grader's contract. The grader's
engine run is tested with the evaluation CLI (tests/eval/test_eval_cli.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from srpo_mcore.curation.config import CurationConfig
from srpo_mcore.curation.curate import Curator, main
from srpo_mcore.curation.hooks import ModelGrader, ReferenceChecker, solve_rates
from srpo_mcore.data.loaders import load_records
from srpo_mcore.data.records import MathRecord


@pytest.fixture(scope="module")
def checker():
    with_sandbox = ReferenceChecker()
    yield with_sandbox
    with_sandbox.close()


@pytest.fixture
def humaneval(shared_data):
    return load_records(shared_data / "code/HumanEval.jsonl.gz")[0]


def test_correct_reference_passes_and_broken_one_fails(checker, humaneval, shared_data):
    assert checker(humaneval)
    leetcode = load_records(shared_data / "code/leetcode_test.json")[0]
    assert leetcode.reference_solution and checker(leetcode)
    broken = dataclasses.replace(humaneval, reference_solution=humaneval.reference_solution.replace(
        "return True", "return False"))
    verdict = checker(broken)
    assert not verdict and verdict.detail.startswith("wrong_answer: 0/1 tests passed")
    crashing = dataclasses.replace(humaneval, reference_solution=humaneval.starter_code + "    raise KeyError(1)\n")
    assert not checker(crashing)


def test_no_reference_is_nothing_to_check(checker, shared_data):
    record = load_records(shared_data / "code/livecodebench_sample.json")[0]
    assert record.reference_solution is None and checker(record) is None


@pytest.mark.parametrize("answer, ok", [("\\frac{1}{2}", True), ("$x = 3$", True), ("\\boxed{025}", True),
                                        ("\\frac{", False), ("\\boxed{5", False)])
def test_math_gold_must_parse(checker, answer, ok):
    verdict = checker(MathRecord("m/1", "Compute it.", answer))
    assert bool(verdict) is ok and (ok or verdict.detail)


def test_reference_check_step_reports_why(checker, humaneval):
    broken = dataclasses.replace(humaneval, id="HumanEval/broken", problem=humaneval.problem + " (variant)",
                                 reference_solution=humaneval.starter_code + "    return 1 / 0\n")
    config = CurationConfig(check_answers=False, dedup=False, filters=[])
    records, reports = Curator(config, verify_reference=checker, log=lambda _m: None).run([humaneval, broken])
    step = next(r for r in reports if r.name == "reference_check")
    assert [r.id for r in records] == ["HumanEval/0"] and dict(step.counts) == {"reference_passes": 1}
    (record_id, detail), = step.removed["reference_fails"]
    assert record_id == "HumanEval/broken" and "ZeroDivisionError" in detail


def test_solve_rates_from_samples(tmp_path):
    rows = [("a", 1.0), ("a", 0.0), ("a", 1.0), ("a", 1.0), ("b", 0.0), ("b", 0.0), ("b", 0.0), ("b", 0.0)]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps({"problem_id": p, "accuracy": a}) + "\n" for p, a in rows))
    assert solve_rates(path) == {"a": 0.75, "b": 0.0}


def test_grader_refuses_bad_model_and_options(tmp_path, capsys):
    with pytest.raises(ValueError, match="not an HF checkpoint directory"):
        ModelGrader(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="may not set --k"):
        ModelGrader(tmp_path, "--tp 2 --k 3")
    assert ModelGrader(tmp_path)([], 4) == []
    (tmp_path / "in.jsonl").write_text('{"problem": "1+1=", "answer": "2"}\n')
    code = main(["--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o.jsonl"), "--report",
                 str(tmp_path / "r.json"), "--grade-with-model", str(tmp_path / "none")])
    assert code == 2 and "not an HF checkpoint directory" in capsys.readouterr().err
