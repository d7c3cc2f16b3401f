"""benchmarks/stages.py (SRPO's two-stage schedule vs one mixture from step 1): the arms differ in the stage settings
alone, a run's metrics.jsonl is read into the figures worked out by hand, and a command without inputs stops before
training. (The comparison itself trains 4 x 160 steps: docs/benchmarks.md, not the suite.)"""

import json
from pathlib import Path

import pytest

from benchmarks.stages import arm_overrides, by_arm, parse_args, summarize_run


def test_the_arms_differ_only_in_the_stage_schedule(tmp_path):
    args = parse_args(["--base", "b", "--data", "d", "--steps", "20", "--switch-step", "11", "x.y=1"])
    files = {n: Path(f"/d/{n}.jsonl") for n in ("train", "code_train", "heldout", "code_heldout")}
    staged = arm_overrides(args, "staged", 3, tmp_path, Path("/b"), files)
    mixed = arm_overrides(args, "mixed", 3, tmp_path, Path("/b"), files)
    assert set(staged) - set(mixed) == {"stages.two_stage=true", "stages.switch_step=11"}
    assert set(mixed) - set(staged) == {"stages.two_stage=false"}
    assert {"train.seed=3", "train.steps=20", "data.code_train_files=[/d/code_train.jsonl]", "x.y=1"} <= set(mixed)


def test_summary_of_synthetic_runs(tmp_path):
    def run(name, rows, wall):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "wall_time.json").write_text(json.dumps({"wall_s": wall, "overrides": []}))
        return d

    staged = run("staged", [
        {"step": 0, "eval/math_pass@1": 0.5, "eval/code_pass@1": 0.4},
        {"step": 1, "response/length_mean": 10.0},
        {"step": 2, "response/length_mean": 12.0, "eval/math_pass@1": 0.7, "eval/code_pass@1": 0.5},
        {"step": 3, "response/length_mean": 16.0, "accuracy/code_mean": 0.5},
        {"step": 4, "response/length_mean": 18.0, "accuracy/code_mean": 0.6,
         "eval/math_pass@1": 0.8, "eval/code_pass@1": 0.6}], 100.0)
    mixed = run("mixed", [
        {"step": 0, "eval/math_pass@1": 0.5, "eval/code_pass@1": 0.4},
        {"step": 1, "response/length_mean": 14.0, "accuracy/code_mean": 0.5,
         "eval/math_pass@1": 0.6, "eval/code_pass@1": 0.8}], 50.0)
    s, m = summarize_run(staged, "staged", 1), summarize_run(mixed, "mixed", 1)
    assert [e["step"] for e in s["evals"]] == [0, 2, 4] and s["end"] == {"step": 4, "math": 0.8, "code": 0.6}
    assert s["length_math_only_steps"] == 11.0 and s["length_math_code_steps"] == 17.0
    assert m["length_math_only_steps"] is None and m["length_math_code_steps"] == 14.0
    summary = by_arm([s, m, summarize_run(staged, "staged", 2)])
    assert summary["staged"]["end_mean"] == pytest.approx(0.7) and summary["staged"]["seeds"] == [1, 2]
    assert summary["mixed"]["end_code"] == 0.8 and summary["mixed"]["wall_s"] == 50.0


def test_training_needs_base_and_data(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--steps", "10"])
    assert "--base and --data" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--base", "b", "--data", "d", "--steps", "10", "--switch-step", "11"])
