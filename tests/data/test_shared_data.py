"""Every public sample in shared/data loads with the expected format, size and mappings."""

import pytest

from srpo_mcore.data.loaders import load_file, load_records
from srpo_mcore.data.records import CodeRecord, DataError, MathRecord

# file -> (format, rows); rows as listed in shared/data/README.md
FILES = {
    "math/aime24.json": ("aime", 30),
    "math/aime25.jsonl": ("problem_answer", 30),
    "math/amc.json": ("amc", 83),
    "math/math500.json": ("math500", 500),
    "math/train_aime_1983_2023.json": ("aime", 975),
    "code/HumanEval.jsonl.gz": ("humaneval", 164),
    "code/leetcode_test.json": ("leetcode", 100),
    "code/leetcode_more.json": ("leetcode", 100),
    "code/codeforces_test.json": ("codeforces", 408),
    "code/livecodebench_sample.json": ("livecodebench", 150),
    "code/livecodebench_more.json": ("livecodebench", 729),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_shared_file_loads_strictly(shared_data, name):
    result = load_file(shared_data / name)
    fmt, rows = FILES[name]
    assert (result.format, result.rows, len(result.records), result.errors) == (fmt, rows, rows, [])
    domain = MathRecord if name.startswith("math/") else CodeRecord
    assert all(isinstance(r, domain) for r in result.records)
    assert len({r.id for r in result.records}) == rows


def test_train_math_has_four_rows_without_answers(shared_data):
    path = shared_data / "math/train_math.json"
    with pytest.raises(DataError) as info:
        load_records(path)
    assert (info.value.row, info.value.field) == (887, "answer")
    result = load_file(path, on_invalid="skip")
    assert [e.row for e in result.errors] == [887, 1010, 5329, 5331]
    assert len(result.records) == 7470
    assert [(r.row, r.field) for r in result.repairs] == [(5320, "problem")]  # "\t" + "extbf"


def test_aime25_escape_corruption_is_repaired(shared_data):
    result = load_file(shared_data / "math/aime25.jsonl")
    assert [r.row for r in result.repairs] == [19, 20, 28]  # README's 0-based rows 18, 19 and 27
    assert "\\frac{\\log_k" in result.records[18].problem and "\\triangle DEF" in result.records[19].problem


def test_mapped_answers_and_entry_points(shared_data):
    assert load_records(shared_data / "math/amc.json")[0].answer == "142"
    lcb = load_records(shared_data / "code/livecodebench_sample.json")
    functional = [r for r in lcb if any(t.kind == "functional" for t in r.tests)]
    assert functional and all(r.entry_point and r.entry_point.startswith("Solution().") for r in functional)
    assert all(r.entry_point is None for r in lcb if r not in functional)
    leetcode = load_records(shared_data / "code/leetcode_test.json")[0]
    assert leetcode.entry_point == "Solution().minOperations" and leetcode.reference_solution
    codeforces = load_records(shared_data / "code/codeforces_test.json")[0]
    assert codeforces.time_limit == 1.0 and codeforces.tests[0].kind == "stdin"
