"""Loaders: field mappings, and malformed rows rejected with file, row and field named."""

import gzip
import json
import re

import pytest

from srpo_mcore.data.loaders import load_file, load_many, load_records
from srpo_mcore.data.records import CodeRecord, DataError, MathRecord
from tests.fixtures.data_files import write_json, write_jsonl

MATH_ROW = {"problem": "What is $1+1$?", "answer": "2"}
CF_ROW = {"problem": "Print the sum of two integers.", "tests": [{"input": "1 2\n", "output": "3\n"}]}


def _error(path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        load_records(path, **kwargs)
    return info.value


def _located(err: DataError, path, row: int, field: str | None, label: str = "row"):
    assert (err.path, err.row, err.field) == (str(path), row, field)
    assert str(err).startswith(f"{path}: {label} {row}")
    if field:
        assert f"field '{field}'" in str(err)


# --- malformed rows ---------------------------------------------------------------------------------------


def test_missing_field_names_file_row_and_field(tmp_path):
    path = write_json(tmp_path / "m.json", [MATH_ROW, MATH_ROW, {"problem": "What is 2+2?"}])
    err = _error(path)
    _located(err, path, 3, "answer")
    assert "missing field" in str(err)


def test_wrong_type_names_the_field(tmp_path):
    path = write_json(tmp_path / "m.json", [MATH_ROW, {"problem": ["not", "text"], "answer": "1"}])
    err = _error(path)
    _located(err, path, 2, "problem")
    assert "expected str, got list" in str(err)


def test_empty_problem_is_rejected(tmp_path):
    path = write_json(tmp_path / "m.json", [{"problem": "  \n", "answer": "1"}])
    _located(_error(path), path, 1, "problem")


def test_bad_json_line_names_the_line(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [MATH_ROW, MATH_ROW, '{"problem": "x", "answer": ', MATH_ROW])
    err = _error(path)
    _located(err, path, 3, None, label="line")
    assert "invalid JSON" in str(err)


def test_jsonl_rows_are_counted_by_line_including_blank_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(MATH_ROW) + "\n\n" + json.dumps({"problem": "x"}) + "\n")
    _located(_error(path), path, 3, "answer", label="line")


def test_row_that_is_not_an_object(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [MATH_ROW, "[1, 2]"])
    err = _error(path)
    _located(err, path, 2, None, label="line")
    assert "expected a JSON object, got list" in str(err)


def test_malformed_tests_json_string(tmp_path):
    path = write_json(tmp_path / "cf.json", [CF_ROW, {"problem": "p", "tests": '[{"input": "1", "output": '}])
    err = _error(path, format="codeforces")
    _located(err, path, 2, "tests")
    assert "malformed tests JSON" in str(err)


@pytest.mark.parametrize(
    "tests, field",
    [
        ([], "tests"),
        ({"input": "1"}, "tests"),
        ([{"input": "1"}], "tests[0].output"),
        ([{"input": "1", "output": "1"}, "2"], "tests[1]"),
        ([{"input": 5, "output": "1"}], "tests[0].input"),
    ],
)
def test_bad_codeforces_tests(tmp_path, tests, field):
    path = write_json(tmp_path / "cf.json", [CF_ROW, {"problem": "p", "tests": tests}])
    _located(_error(path, format="codeforces"), path, 2, field)


def test_livecodebench_functional_tests_need_a_function_name(tmp_path):
    row = {
        "problem": "p",
        "starter_code": "",
        "tests": [{"input": "1", "output": "1", "testtype": "functional"}],
    }
    path = write_json(tmp_path / "lcb.json", [row])
    _located(_error(path), path, 1, "starter_code")
    row["tests"][0]["testtype"] = "interactive"
    path = write_json(tmp_path / "lcb.json", [row])
    _located(_error(path), path, 1, "tests[0].testtype")


def test_leetcode_tests_need_a_check_program(tmp_path):
    path = write_json(
        tmp_path / "lc.json", [{"problem": "p", "solutions": "", "tests": {"functional": "assert 1"}}]
    )
    _located(_error(path, format="leetcode"), path, 1, "tests.functional")


def test_unrepairable_control_character_is_rejected(tmp_path):
    path = write_json(tmp_path / "m.json", [MATH_ROW, {"problem": "What is \x01 x?", "answer": "1"}])
    err = _error(path)
    _located(err, path, 2, "problem")
    assert "U+0001" in str(err)


def test_escape_corruption_is_repaired_or_rejected_on_request(tmp_path):
    row = {"problem": "Find $\x0crac{1}{2} + \triangle$ and \\tan x.", "answer": "\x0crac12"}
    path = write_jsonl(tmp_path / "a.jsonl", [MATH_ROW, row])
    result = load_file(path)
    record = result.records[1]
    assert record.problem == "Find $\\frac{1}{2} + \\triangle$ and \\tan x."
    assert record.answer == "\\frac12"
    assert [(r.row, r.field, r.count) for r in result.repairs] == [(2, "problem", 2), (2, "answer", 1)]
    _located(_error(path, repair=False), path, 2, "problem", label="line")


def test_whole_file_problems(tmp_path):
    assert "expected a JSON list" in str(_error(write_json(tmp_path / "m.json", {"problem": "x"})))
    broken = tmp_path / "b.json"
    broken.write_text('[{"problem": "x", ')
    assert re.search(r"b\.json: invalid JSON at line 1", str(_error(broken)))
    assert "unsupported file type" in str(_error(tmp_path / "m.csv"))
    assert "no such file" in str(_error(tmp_path / "missing.json"))
    weird = write_json(tmp_path / "w.json", [{"colour": "red"}])
    assert "cannot detect the format" in str(_error(weird))
    assert "unknown format 'nope'" in str(_error(weird, format="nope"))


def test_skip_mode_collects_every_bad_row(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [MATH_ROW, "{oops", {"problem": "x"}, MATH_ROW, {"answer": 3}])
    result = load_file(path, on_invalid="skip")
    assert len(result.records) == 2 and result.rows == 5
    assert [(e.row, e.field) for e in result.errors] == [(2, None), (3, "answer"), (5, "problem")]


def test_domain_is_enforced_when_asked(tmp_path):
    path = write_json(tmp_path / "cf.json", [CF_ROW])
    _located(_error(path, domain="math"), path, 1, "domain")


def test_duplicate_ids_across_files_are_rejected(tmp_path):
    a = write_json(tmp_path / "a.json", [MATH_ROW])
    (tmp_path / "sub").mkdir()
    b = write_json(tmp_path / "sub" / "a.json", [MATH_ROW])
    with pytest.raises(DataError, match="duplicate id 'a/1'"):
        load_many([a, b])


# --- field mappings ---------------------------------------------------------------------------------------


def test_answer_canonicalisation(tmp_path):
    amc = write_json(
        tmp_path / "amc.json",
        [{"problem": "p", "answer": 142.0, "url": "u"}, {"problem": "q", "answer": -0.5, "url": "u"}],
    )
    assert [r.answer for r in load_records(amc)] == ["142", "-0.5"]
    aime = write_json(
        tmp_path / "aime.json",
        [{"problem": "p", "answer": "025", "year": 2024, "aime_number": 1, "problem_number": 3}],
    )
    (record,) = load_records(aime)
    assert (record.id, record.answer, record.source) == ("aime/2024-1-3", "25", "aime")
    bad = write_json(tmp_path / "amc2.json", [{"problem": "p", "answer": True, "url": "u"}])
    _located(_error(bad), bad, 1, "answer")


def test_math_layouts_ids_and_meta():
    """Each math layout's id, answer padding and meta (the table in data/formats.py)."""
    from srpo_mcore.data.formats import FORMATS

    row = {"problem": "p", "answer": "007", "year": 2024, "aime_number": "II", "problem_number": 4}
    aime = FORMATS["aime"](row, "aime", 9)
    assert (aime.id, aime.answer, aime.meta) == ("aime/2024-II-4", "7", {"year": 2024, "aime_number": "II",
                                                                        "problem_number": 4})
    assert FORMATS["aime"]({"problem": "p", "answer": "1"}, "aime", 9).id == "aime/9"  # no id fields: row number
    m500 = FORMATS["math500"]({"problem": "p", "answer": "007", "unique_id": "test/x.json"}, "math500", 2)
    assert (m500.id, m500.answer, m500.meta) == ("math500/test/x.json", "007", {})  # no zero stripping
    with pytest.raises(DataError) as err:
        FORMATS["math500"]({"problem": "p", "answer": "1"}, "math500", 2)
    assert err.value.field == "unique_id"
    train = FORMATS["math_train"]({"problem": "p", "answer": "x", "type": "Algebra"}, "train_math", 5)
    assert (train.id, train.meta) == ("train_math/5", {"type": "Algebra"})


def test_code_formats_map_entry_points_and_limits(tmp_path):
    lcb = {
        "problem": "Return the sum.",
        "starter_code": "class Solution:\n    def addUp(self, nums: List[int]) -> int:\n        ",
        "tests": json.dumps([{"input": "[1, 2]", "output": "3", "testtype": "functional"}]),
    }
    (record,) = load_records(write_json(tmp_path / "lcb.json", [lcb]))
    assert record.entry_point == "Solution().addUp" and record.tests[0].kind == "functional"
    lc = {
        "problem": "Please solve the programming task below using a self-contained code snippet in a markdown "
        "code block.\n\nAdd.",
        "solutions": "class Solution: ...",
        "tests": {
            "functional": "def check(candidate):\n    assert candidate(1) == 1\n\n\ncheck(Solution().f)"
        },
    }
    (record,) = load_records(write_json(tmp_path / "lc.json", [lc]))
    assert record.entry_point == "Solution().f" and record.problem == "Add."
    assert record.tests[0].kind == "check" and not record.tests[0].input.rstrip().endswith(
        "check(Solution().f)"
    )
    cf = {**CF_ROW, "problem": "Sum.\n\nTime Limit: 1500 ms\nMemory Limit: 256 MB"}
    (record,) = load_records(write_json(tmp_path / "cf.json", [cf]))
    assert record.time_limit == 1.5 and record.entry_point is None


def test_gzipped_jsonl(tmp_path):
    path = tmp_path / "he.jsonl.gz"
    row = {
        "task_id": "HE/0",
        "prompt": "def f(x):\n",
        "canonical_solution": "    return x\n",
        "test": "def check(candidate):\n    assert candidate(1) == 1\n",
        "entry_point": "f",
    }
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(row) + "\n")
    (record,) = load_records(path)
    assert isinstance(record, CodeRecord) and record.id == "HE/0" and record.entry_point == "f"
    assert record.reference_solution == "def f(x):\n    return x\n"


def test_own_record_format_round_trips_through_a_file(tmp_path):
    records = [MathRecord("m/1", "p", "1", source="s"), MathRecord("m/2", "q", "2", difficulty="easy")]
    path = write_jsonl(tmp_path / "curated.jsonl", [r.to_dict() for r in records])
    result = load_file(path)
    assert result.format == "record" and result.records == records


def test_parquet_without_pyarrow_says_what_is_missing(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` raise ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "m.parquet"
    path.write_bytes(b"PAR1")
    err = _error(path)
    assert "pyarrow" in str(err) and err.path == str(path)


def test_parquet_rows_load(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "cf.parquet"
    # Parquet columns are typed, so the bad row carries an empty test list (a code problem without tests).
    pq.write_table(pa.Table.from_pylist([CF_ROW, {"problem": "p", "tests": []}]), path)
    err = _error(path)
    _located(err, path, 2, "tests")
    (record,) = load_file(path, on_invalid="skip").records
    assert record.tests[0].input == "1 2\n"


def test_load_many_logs_skipped_rows(tmp_path, caplog):
    path = write_json(tmp_path / "m.json", [MATH_ROW, {"problem": "x"}])
    records = load_many([path], on_invalid="skip")
    assert len(records) == 1
    assert "row 2: field 'answer': missing field" in caplog.text


def test_inspect_cli_summarises_and_flags_bad_rows(tmp_path, capsys):
    from srpo_mcore.data.inspect import main

    good = write_json(tmp_path / "good.json", [MATH_ROW, MATH_ROW])
    assert main([str(good)]) == 0
    out = capsys.readouterr().out
    assert "format: problem_answer" in out and "records: 2" in out and '"answer": "2"' in out
    bad = write_json(tmp_path / "bad.json", [MATH_ROW, {"problem": "x"}])
    assert main([str(bad)]) == 1
    assert "row 2: field 'answer'" in capsys.readouterr().out
