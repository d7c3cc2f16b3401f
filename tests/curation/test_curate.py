"""Curation pipeline: the CLI end to end on shared samples with injected bad rows, and the engine hooks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from srpo_mcore.curation.config import CurationConfig
from srpo_mcore.curation.curate import Curator, main
from srpo_mcore.curation.dedup import jaccard, shingles
from srpo_mcore.data.files import write_jsonl
from srpo_mcore.data.loaders import load_file
from srpo_mcore.data.records import CodeRecord, CodeTest, MathRecord
from tests.fixtures.data_files import write_json
from tests.fixtures.data_files import write_jsonl as write_raw_jsonl

REPO = Path(__file__).resolve().parents[2]
# math500 rows (0-based) that no filter rejects, with parseable answers, no URLs and no duplicates among them.
MATH_ROWS = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 16, 19, 20, 21, 22, 23, 24, 25]
CODE_ROWS = range(10)  # livecodebench_sample rows, likewise clean


def _math(problem, answer, uid):
    return {"problem": problem, "answer": answer, "unique_id": uid}


def _lcb(problem, tests, starter=""):
    return {"problem": problem, "starter_code": starter, "tests": tests}


def _sample(shared: Path, tmp: Path) -> tuple[Path, Path]:
    """20 clean math + 10 clean code rows from the shared data, plus injected rows, one per expected removal."""
    math = [
        json.loads(json.dumps(r))
        for i, r in enumerate(json.load(open(shared / "math/math500.json")))
        if i in MATH_ROWS
    ]
    with_frac = next(r for r in math if "\\frac" in r["problem"])
    with_frac["problem"] = with_frac["problem"].replace("\\frac", "\x0crac")  # repaired on load
    math[0]["problem"] += " (Hint: https://example.com/hint)"  # cleaned away
    longest = max(math, key=lambda r: len(r["problem"]))
    cut = longest["problem"].index(" ", len(longest["problem"]) // 2)
    near = longest["problem"][:cut] + " exactly" + longest["problem"][cut:]
    assert jaccard(shingles(near, 5), shingles(longest["problem"], 5)) >= CurationConfig().near_dup_threshold
    copied = next(r for r in math[1:] if r is not with_frac and r is not longest)
    aime = json.load(open(shared / "math/aime24.json"))[0]
    math += [
        _math(copied["problem"].upper() + "  ", copied["answer"], "inject/exact"),
        _math(near, longest["answer"], "inject/near"),
        _math("(a) Find the area of a unit square. (b) What is its perimeter?", "1", "inject/parts"),
        _math("Prove that $\\sqrt{2}$ is irrational.", "proof", "inject/proof"),
        _math("Find the shaded area. [asy] draw(unitcircle); [/asy]", "\\pi", "inject/figure"),
        _math("Compute $2^{10}$.", "\\frac{", "inject/unparseable"),
        {"problem": "Compute $3^4$.", "unique_id": "inject/no-answer"},
        _math(aime["problem"], aime["answer"], "inject/aime24"),
        _math("Compute $5\x01+1$.", "6", "inject/control"),
    ]
    code = [
        r for i, r in enumerate(json.load(open(shared / "code/livecodebench_sample.json"))) if i in CODE_ROWS
    ]
    stdin = [{"input": "1\n", "output": "1\n", "testtype": "stdin"}]
    code += [
        _lcb("This is an interactive problem. Guess the hidden number in 30 queries.", stdin),
        _lcb("Read the numbers from input.txt and print their sum.", stdin),
        _lcb("Make an HTTP request to the API endpoint and print the status code.", stdin),
        _lcb("Print the input.", '[{"input": "1", "output": '),
        '{"problem": "Print one.", "starter_code": "", ',
        _lcb(
            "Return x.",
            [{"input": "not json", "output": "1", "testtype": "functional"}],
            "class Solution:\n    def f(self, x):\n        ",
        ),
        code[0],
    ]
    return write_json(tmp / "math.json", math), write_raw_jsonl(tmp / "code.jsonl", code)


EXPECTED = {  # step -> (records out, removals by reason)
    "load": (42, {"invalid_answer": 1, "invalid_problem": 1, "invalid_row": 1, "invalid_tests": 1}),
    "clean": (42, {}),
    "filter": (
        36,
        {
            "needs_figure": 1,
            "needs_files": 1,
            "needs_network": 1,
            "needs_special_env": 1,
            "proof_only": 1,
            "several_questions": 1,
        },
    ),
    "dedup": (33, {"exact_duplicate": 2, "near_duplicate": 1}),
    "decontaminate": (32, {"eval_overlap": 1}),
    "answer_check": (30, {"malformed_tests": 1, "unparseable_answer": 1}),
    "reference_check": (30, {}),
    "difficulty": (30, {}),
}


def test_curate_cli_end_to_end(shared_data, tmp_path):
    math, code = _sample(shared_data, tmp_path)
    out, report_path = tmp_path / "out" / "curated.jsonl", tmp_path / "out" / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "srpo_mcore.curation.curate",
        "--input",
        str(math),
        str(code),
        "--eval",
        str(shared_data / "math/aime24.json"),
        "--output",
        str(out),
        "--report",
        str(report_path),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[curate] filter: 42 -> 36" in proc.stderr

    report = json.loads(report_path.read_text())
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == list(EXPECTED)
    got = {
        n: (s["out"], {r: v["count"] for r, v in s["removed_by_reason"].items()}) for n, s in steps.items()
    }
    assert got == EXPECTED
    assert steps["load"]["in"] == 46 and steps["load"]["modified"] == {"control_chars_repaired": 1}
    assert steps["clean"]["modified"]["urls_removed"] == 1
    assert steps["filter"]["removed_by_reason"]["proof_only"]["examples"][0]["id"] == "math/inject/proof"
    assert steps["dedup"]["removed_by_reason"]["near_duplicate"]["examples"][0]["id"] == "math/inject/near"
    assert steps["reference_check"]["status"] == "not checked" and steps["difficulty"]["status"] == "skipped"
    assert report["removed_total"] == 16 and report["output"]["by_domain"] == {"math": 20, "code": 10}

    curated = load_file(out)
    assert curated.format == "record" and len(curated.records) == 30
    assert not any("https://" in r.problem for r in curated.records)
    assert sum("\\frac" in r.problem for r in curated.records) >= 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["curated.jsonl", "report.json"]  # no temp files


def test_cli_rejects_unreadable_input_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    code = main(
        [
            "--input",
            str(tmp_path / "missing.json"),
            "--output",
            str(out),
            "--report",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 2 and "no such file" in capsys.readouterr().err and not out.exists()


# --- engine hooks ------------------------------------------------------------------------------------------

RECORDS = [MathRecord(f"m/{i}", f"Compute ${i} \\times 7$ exactly.", str(7 * i)) for i in range(1, 4)]
QUIET = {"log": lambda _m: None}


def _config(**changes) -> CurationConfig:
    return CurationConfig(check_answers=False, **changes)


def test_difficulty_grading_through_solve_rate():
    calls = []

    def solve_rate(records, k):
        calls.append((len(records), k))
        return [1.0, 0.5, 0.0]

    curator = Curator(_config(pass_k=4, drop_difficulties=["easy"]), solve_rate=solve_rate, **QUIET)
    records, reports = curator.run(list(RECORDS))
    assert calls == [(3, 4)]
    assert [(r.id, r.difficulty, r.solve_rate) for r in records] == [
        ("m/2", "medium", 0.5),
        ("m/3", "hard", 0.0),
    ]
    assert RECORDS[1].difficulty is None  # inputs are not mutated
    step = reports[-1]
    assert dict(step.counts) == {"easy": 1, "medium": 1, "hard": 1}
    assert [i for i, _ in step.removed["graded_easy"]] == ["m/1"]


@pytest.mark.parametrize("rates, message", [([0.5], "1 rates for 3 records"), ([0.1, 2.0, 0.3], "outside")])
def test_misbehaving_solve_rate_is_an_error(rates, message):
    curator = Curator(_config(), solve_rate=lambda records, k: rates, **QUIET)
    with pytest.raises(ValueError, match=message):
        curator.run(list(RECORDS))


def test_reference_hook_outcomes():
    code = [
        CodeRecord(
            f"c/{i}", f"Problem number {i} about sorting {i * 11} items.", [CodeTest("stdin", "1", "1")]
        )
        for i in range(4)
    ]

    def verify(record):
        outcome = [True, False, None, "boom"][int(record.id[-1])]
        if outcome == "boom":
            raise RuntimeError("sandbox crashed")
        return outcome

    records, reports = Curator(_config(), verify_reference=verify, **QUIET).run(code)
    step = next(r for r in reports if r.name == "reference_check")
    assert [r.id for r in records] == ["c/0", "c/2"]
    assert dict(step.counts) == {"reference_passes": 1, "no_reference": 1}
    assert step.removed["reference_fails"] == [("c/1", "")]
    assert step.removed["reference_error"] == [("c/3", "RuntimeError: sandbox crashed")]


def test_disabled_steps_pass_records_through():
    config = _config(clean=False, filters=[], dedup=False)
    records, reports = Curator(config, **QUIET).run(list(RECORDS) + [RECORDS[0]])
    assert len(records) == 4
    assert {r.name: r.status for r in reports} == {
        "clean": "skipped",
        "filter": "skipped",
        "dedup": "skipped",
        "decontaminate": "skipped",
        "answer_check": "skipped",
        "reference_check": "not checked",
        "difficulty": "skipped",
    }


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "data.jsonl"
    write_jsonl([{"a": 1}], path)

    def rows():
        yield {"a": 2}
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        write_jsonl(rows(), path)
    assert path.read_text() == '{"a": 1}\n' and [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]
