import json

import pytest

from srpo_mcore.data.records import CodeRecord, CodeTest, DataError, MathRecord, record_from_dict


def _json_round_trip(record):
    return record_from_dict(json.loads(json.dumps(record.to_dict())))


def test_math_record_round_trips_through_json():
    record = MathRecord(
        "aime24/1",
        "Find $x$.",
        "25",
        source="aime24",
        difficulty="hard",
        solve_rate=0.125,
        meta={"year": 2024},
    )
    assert _json_round_trip(record) == record
    assert record.to_dict()["domain"] == "math"


def test_code_record_round_trips_through_json():
    record = CodeRecord(
        "lc/1",
        "Add two numbers.",
        [CodeTest("functional", "1\n2", "3"), CodeTest("stdin", "1 2\n", "3\n")],
        starter_code="class Solution:\n    def add(self, a, b):\n",
        entry_point="Solution().add",
        time_limit=2.0,
        reference_solution="class Solution:\n    def add(self, a, b):\n        return a + b\n",
    )
    again = _json_round_trip(record)
    assert again == record
    assert isinstance(again.tests[0], CodeTest)


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"domain": "poetry"}, "domain", "not one of"),
        ({"answer": None}, "answer", "missing value"),
        ({"answer": "   "}, "answer", "empty text"),
        ({"problem": 7}, "problem", "expected str, got int"),
        ({"difficulty": "trivial"}, "difficulty", "not one of"),
        ({"solve_rate": 1.5}, "solve_rate", "[0, 1]"),
        ({"solve_rate": True}, "solve_rate", "got bool"),
    ],
)
def test_math_record_from_dict_names_the_bad_field(change, field, message):
    row = {**MathRecord("m/1", "Find $x$.", "2").to_dict(), **change}
    with pytest.raises(DataError, match=message) as info:
        record_from_dict(row)
    assert info.value.field == field


def test_code_record_from_dict_names_the_bad_test():
    row = CodeRecord("c/1", "p", [CodeTest("stdin", "1", "1"), CodeTest("stdin", "2", "2")]).to_dict()
    row["tests"][1]["kind"] = "interactive"
    with pytest.raises(DataError, match=r"field 'tests\[1\]\.kind'"):
        record_from_dict(row)
    row["tests"] = []
    with pytest.raises(DataError, match="no tests"):
        record_from_dict(row)


def test_missing_id_is_reported():
    row = MathRecord("m/1", "Find $x$.", "2").to_dict()
    del row["id"]
    with pytest.raises(DataError, match="field 'id': missing field"):
        record_from_dict(row)
