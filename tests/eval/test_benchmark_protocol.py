"""The evaluation protocol: LiveCodeBench and AIME default to pass@1 over 32 samples (the paper's), the optional
release-date window on LiveCodeBench's contest dates, and summary.json recording the sampling settings."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from srpo_mcore.config import load_config
from srpo_mcore.config.model import ModelConfig
from srpo_mcore.eval import report
from srpo_mcore.eval.benchmarks import BENCHMARKS, resolve


def lcb_file(tmp_path: Path, dates: list[str | None]) -> Path:
    rows = []
    for i, date in enumerate(dates):
        row = {"problem": f"Print {i}.", "starter_code": "", "tests": [{"input": "", "output": str(i),
                                                                        "testtype": "stdin"}]}
        if date is not None:
            row["contest_date"] = date
        rows.append(row)
    path = tmp_path / "livecodebench_dated.json"
    path.write_text(json.dumps(rows))
    return path


def test_paper_benchmarks_default_to_32_samples(shared_data):
    assert {name: k for name, (_, k) in BENCHMARKS.items() if k == 32} == {"aime24": 32, "aime25": 32,
                                                                            "livecodebench": 32}
    (lcb,) = resolve(["livecodebench"], [], data_dir=shared_data, k=None, limit=None)
    assert lcb.k == 32
    (lcb,) = resolve(["livecodebench"], [], data_dir=shared_data, k=4, limit=None)
    assert lcb.k == 4


def test_release_date_window_selects_inclusive_dates(tmp_path):
    path = lcb_file(tmp_path, ["2023-05-01T00:00:00", "2023-08-21T00:00:00", "2024-01-31", "2024-02-01"])
    (bench,) = resolve([], [str(path)], data_dir=None, k=None, limit=None, since="2023-08-21", until="2024-01-31")
    records = bench.load_records()
    assert [r.problem for r in records] == ["Print 1.", "Print 2."]
    assert [r.meta["contest_date"] for r in records] == ["2023-08-21", "2024-01-31"]
    (only_since,) = resolve([], [str(path)], data_dir=None, k=None, limit=1, since="2023-06-01")
    assert [r.problem for r in only_since.load_records()] == ["Print 1."]  # the window first, then --limit
    (no_window,) = resolve([], [str(path)], data_dir=None, k=None, limit=None)
    assert len(no_window.load_records()) == 4


def test_window_errors_name_the_problem(tmp_path, shared_data):
    path = lcb_file(tmp_path, ["2023-05-01", None])
    (bench,) = resolve([], [str(path)], data_dir=None, k=None, limit=None, since="2023-01-01")
    with pytest.raises(ValueError, match=r"1 of 2 problems carry no contest_date \(first: livecodebench_dated/2\)"):
        bench.load_records()
    (shared,) = resolve(["livecodebench"], [], data_dir=shared_data, k=None, limit=None, until="2024-01-01")
    with pytest.raises(ValueError, match="879 of 879 problems carry no contest_date"):
        shared.load_records()
    (empty,) = resolve([], [str(lcb_file(tmp_path, ["2023-05-01"]))], data_dir=None, k=None, limit=None,
                       since="2024-01-01")
    with pytest.raises(ValueError, match=r"no problem released in \[2024-01-01, \.\.\.\] \(its problems span 2023-05-01"):
        empty.load_records()
    with pytest.raises(ValueError, match="--since '2024-13-01': expected a date"):
        resolve([], [str(path)], data_dir=None, k=None, limit=None, since="2024-13-01")
    with pytest.raises(ValueError, match="after --until"):
        resolve([], [str(path)], data_dir=None, k=None, limit=None, since="2024-02-01", until="2024-01-01")
    (aime,) = resolve(["aime24"], [], data_dir=shared_data, k=None, limit=None, since="2024-01-01")
    assert len(aime.load_records()) == 30  # undated benchmarks are not filtered


def test_summary_records_sampling_settings_and_window(tmp_path):
    path = lcb_file(tmp_path, ["2023-05-01", "2023-09-01"])
    (bench,) = resolve([], [str(path)], data_dir=None, k=3, limit=None, since="2023-06-01")
    records = bench.load_records()
    cfg = load_config(None, ["rollout.temperature=0.6", "rollout.top_p=0.95", "rollout.max_response_length=200"])
    sample = SimpleNamespace(finish_reason="stop", format_ok=True, status="ok", domain="code",
                             prompt_id=records[0].id, response_text="x", reward=1.0, accuracy=1.0, response_ids=[1])
    prompts = SimpleNamespace(prompts=[SimpleNamespace(record=r) for r in records], dropped_too_long={"code": 0})
    result = report.BenchmarkResult(bench, prompts, {"accuracy": 1.0, "response_length_mean": 1.0}, [[sample] * 3],
                                    seconds=1.0)
    plan = SimpleNamespace(out=str(tmp_path / "out"), cfg=cfg, command=["--k", "3"], tokenizer="tok", seed=11,
                           config_file=None, benchmarks=[bench],
                           checkpoint=SimpleNamespace(kind="hf", path=tmp_path, model=ModelConfig()))
    report.write(plan, [result], world_size=1)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    settings = summary["settings"]
    assert (settings["temperature"], settings["top_p"], settings["max_tokens"], settings["seed"]) == (0.6, 0.95, 200,
                                                                                                      11)
    assert settings["k"] == {bench.name: 3}
    assert summary["benchmarks"][bench.name]["date_window"] == {"since": "2023-06-01", "until": None}
    assert summary["benchmarks"][bench.name]["problems"] == 1


def test_bad_contest_date_names_the_row_and_field(tmp_path):
    from srpo_mcore.data.records import DataError

    (bench,) = resolve([], [str(lcb_file(tmp_path, ["2023-05-01", "last week"]))], data_dir=None, k=None, limit=None)
    with pytest.raises(DataError, match="livecodebench_dated.json: row 2: field 'contest_date': expected an ISO date"):
        bench.load_records()
