"""The trainer's entry: a mixed batch scored in one call, the reward composition, the config checks, and a
smoke run of the benchmark."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from srpo_mcore.config.base import ConfigError
from srpo_mcore.config.rewards import RewardConfig
from srpo_mcore.rewards import RewardManager, RewardRequest
from srpo_mcore.rewards.format import language_penalty

CFG = RewardConfig(math_workers=1, code_workers=2, math_timeout_seconds=3.0, sandbox_cpu_seconds=1.0,
                   sandbox_wall_seconds=3.0, sandbox_total_wall_seconds=10.0, sandbox_memory_mb=512,
                   format_weight=0.1, language_penalty_weight=0.2, sandbox_backend="bwrap")

ADD = {"tests": [{"kind": "stdin", "input": "1 2\n", "output": "3\n"},
                 {"kind": "stdin", "input": "2 2\n", "output": "4\n"}]}
GOOD_CODE = "<think>\nRead two ints.\n</think>\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"
CHINESE = "首先我们计算函数的导数并令其为零。然后检查二阶导数以确保这个点是最小值，所以最小值是四。"
MIXED = "<think>\n" + " ".join(["We", "compute", "carefully"] * 10) + CHINESE * 2 + "\n</think>\n\\boxed{4}"
CHINESE_ONLY = "<think>\n" + CHINESE + "\n</think>\n答案是 \\boxed{4}"


@pytest.fixture(scope="module")
def manager(bwrap_available):
    with RewardManager(CFG) as m:
        yield m


def test_mixed_batch(manager):
    requests = [
        RewardRequest("math", "<think>\n2+2\n</think>\nThe answer is $\\boxed{4}$.", "4", id="m-right"),
        RewardRequest("math", "<think>\n2+2\n</think>\nThe answer is $\\boxed{5}$.", "4", id="m-wrong"),
        RewardRequest("math", "The answer is \\boxed{\\frac{1}{2}}", "0.5", id="m-unformatted"),
        RewardRequest("math", "<think>\nnever finished", "4", id="m-unfinished"),
        RewardRequest("code", GOOD_CODE, ADD, id="c-right"),
        RewardRequest("code", GOOD_CODE.replace("a + b", "a * b"), ADD, id="c-half"),
        RewardRequest("code", "<think>\nno code\n</think>\nSorry.", ADD, id="c-none"),
        RewardRequest("code", GOOD_CODE, {"tests": [{"kind": "nonsense", "input": ""}]}, id="c-bad-gt"),
        RewardRequest("math", MIXED, "4", id="m-mixed-language", prompt="What is 2 + 2? Reason step by step."),
        RewardRequest("math", CHINESE_ONLY, "4", id="m-chinese-for-english", prompt="What is 2 + 2? Show the work."),
        RewardRequest("math", CHINESE_ONLY, "4", id="m-chinese-for-chinese", prompt="2 + 2 等于多少？请写出过程。"),
    ]
    results = {r.id: res for r, res in zip(requests, manager.score(requests))}
    right = results["m-right"]
    assert (right.reward, right.accuracy, right.format_ok, right.language_penalty, right.status) == \
        (1.0, 1.0, True, 0.0, "ok")
    assert results["m-wrong"].reward == 0.0 and results["m-wrong"].status == "wrong_answer"
    unformatted = results["m-unformatted"]
    assert unformatted.accuracy == 1.0 and not unformatted.format_ok and unformatted.reward == pytest.approx(0.9)
    assert results["m-unfinished"].status == "no_answer" and results["m-unfinished"].reward == pytest.approx(-0.1)
    assert results["c-right"].reward == 1.0 and results["c-right"].pass_fraction == 1.0
    half = results["c-half"]
    assert half.accuracy == 0.0 and half.pass_fraction == 0.5 and half.details["tests"] == ["wrong_answer", "ok"]
    assert results["c-none"].status == "no_code" and results["c-none"].reward == pytest.approx(-0.1)
    assert results["c-bad-gt"].status == "bad_ground_truth" and results["c-bad-gt"].accuracy == 0.0
    mixed = results["m-mixed-language"]  # English prompt, prose part English, part Chinese: a partial penalty
    expected, mix = language_penalty(MIXED, 0.1, 20, "What is 2 + 2? Reason step by step.")
    assert 0.1 < expected < 0.9 and mixed.language_penalty == pytest.approx(expected)
    assert mixed.accuracy == 1.0 and mixed.reward == pytest.approx(1.0 - 0.2 * expected)
    assert mixed.details["language_mix"] == pytest.approx(mix.fraction, abs=1e-4)
    assert mixed.details["language_expected"] == "latin (prompt)"
    # the prompt's language reaches the penalty: the same Chinese answer is fully penalised for an English prompt
    assert results["m-chinese-for-english"].language_penalty == 1.0
    assert results["m-chinese-for-english"].reward == pytest.approx(0.8)
    assert results["m-chinese-for-chinese"].language_penalty == 0.0 and results["m-chinese-for-chinese"].reward == 1.0


def test_code_runs_in_parallel(manager):
    sleepy = "<think>\nwait\n</think>\n```python\nimport time\ntime.sleep(1)\nprint(3)\n```"
    requests = [RewardRequest("code", sleepy, {"tests": [{"kind": "stdin", "input": "", "output": "3"}]})] * 4
    t = time.monotonic()
    results = manager.score(requests)
    assert all(r.accuracy == 1.0 for r in results)
    assert time.monotonic() - t < 3.8  # 4 x 1 s on 2 workers: serial would take over 4 s


def test_submit_returns_at_once_and_math_runs_beside_code(manager):
    sleepy = "<think>\nwait\n</think>\n```python\nimport time\ntime.sleep(1.5)\nprint(3)\n```"
    requests = [RewardRequest("code", sleepy, {"tests": [{"kind": "stdin", "input": "", "output": "3"}]}),
                RewardRequest("math", "<think>\n2+2\n</think>\n\\boxed{4}", "4"),
                RewardRequest("math", "<think>\n2+2\n</think>\n\\boxed{5}", "4")]
    t = time.monotonic()
    futures = manager.submit(requests)
    assert time.monotonic() - t < 1.0 and not futures[0].done()  # the sandbox is still sleeping
    math_done = [f.result() for f in futures[1:]]
    assert not futures[0].done()  # math finished while the code request still ran
    assert [r.accuracy for r in math_done] == [1.0, 0.0]
    assert futures[0].result().accuracy == 1.0
    sequential = manager.score(requests)
    assert [(r.reward, r.status) for r in sequential] == [(f.result().reward, f.result().status) for f in futures]


def test_unknown_domain_is_an_error(manager):
    with pytest.raises(ValueError, match="domain"):
        manager.score([RewardRequest("poetry", "x", "y")])


def test_math_only_manager():
    with RewardManager(CFG, domains=("math",)) as m:
        assert m.score([RewardRequest("math", "\\boxed{025}", "25")])[0].accuracy == 1.0
        with pytest.raises(ValueError, match="without the 'code' domain"):
            m.score([RewardRequest("code", GOOD_CODE, ADD)])


@pytest.mark.parametrize("field, value, key", [
    ("math_format", "xml", "rewards.math_format"),
    ("math_timeout_seconds", 0.5, "rewards.math_timeout_seconds"),
    ("sandbox_wall_seconds", 0.5, "rewards.sandbox_wall_seconds"),
    ("sandbox_backend", "docker", "rewards.sandbox_backend"),
    ("language_penalty_threshold", 1.5, "rewards.language_penalty_threshold"),
    ("sandbox_uid", 0, "rewards.sandbox_uid"),
    ("format_weight", -1.0, "rewards.format_weight"),
    ("math_memory_mb", 100, "rewards.math_memory_mb"),
])
def test_config_errors_name_the_key(field, value, key):
    with pytest.raises(ConfigError) as err:
        dataclasses.replace(RewardConfig(), **{field: value}).validate()
    assert err.value.key == key


def test_config_fields_are_documented():
    RewardConfig().validate()
    for f in dataclasses.fields(RewardConfig):
        assert f.metadata.get("help"), f.name


def test_bench_smoke(tmp_path, bwrap_available, shared_data):
    from benchmarks import rewards as bench

    out = tmp_path / "bench.json"
    assert bench.main(["--json", str(out), "--workers", "1", "--math-problems", "10", "--programs", "8"]) == 0
    results = json.loads(out.read_text())
    assert results["math"]["responses"] == 40 and 0.4 <= results["math"]["pool_full_pipeline_correct_fraction"] <= 0.6
    assert results["math"]["pool_full_pipeline_per_cpu_second"] > 0
    assert results["sandbox"]["sandbox_warm_per_s"] > 0 and results["sandbox"]["bare_per_s"] > 0


def test_every_sandbox_limit_comes_from_its_config_field():
    """``limits_from_config`` (used by the manager and the sandbox CLI) reads ``rewards.sandbox_<limit>`` for
    every limit: a field it skipped would silently keep the SandboxLimits default."""
    from srpo_mcore.rewards.sandbox import SandboxLimits, limits_from_config

    defaults = RewardConfig()
    changed = {f"sandbox_{f.name}": getattr(defaults, f"sandbox_{f.name}") * 2 + 1
               for f in dataclasses.fields(SandboxLimits)}
    limits = limits_from_config(dataclasses.replace(defaults, **changed))
    assert {f"sandbox_{k}": v for k, v in dataclasses.asdict(limits).items()} == changed


@pytest.mark.parametrize("cache_size, launches", [(10_000, 2), (0, 8)])
def test_a_groups_identical_programs_run_once(bwrap_available, monkeypatch, cache_size, launches):
    """Eight copies of two programs (a converged group): two sandbox launches with the verdict cache, eight without;
    the same scores either way, each copy with its own details."""
    from srpo_mcore.rewards.sandbox import Sandbox

    count = {"launches": 0}
    real = Sandbox.run_tests

    def counted(self, *args, **kwargs):
        count["launches"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Sandbox, "run_tests", counted)
    wrong = GOOD_CODE.replace("a + b", "a * b")
    requests = [RewardRequest("code", GOOD_CODE if i % 4 else wrong, ADD, id=str(i)) for i in range(8)]
    with RewardManager(dataclasses.replace(CFG, code_cache_size=cache_size), domains=("code",)) as m:
        results = m.score(requests)
    assert count["launches"] == launches
    assert [r.accuracy for r in results] == [0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]
    assert [r.details["tests"] for r in results[:2]] == [["wrong_answer", "ok"], ["ok", "ok"]]
    assert results[0].details["tests"] is not results[4].details["tests"]
