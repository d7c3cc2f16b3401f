"""collect_groups (srpo_mcore/train/collect.py): every domain's sampler request of a round in one engine call,
scored as prompts finish. The reference is the other code path: each domain collected alone under the same seeds.

The engine here is a stand-in whose samples are a function of (prompt tokens, request seed) alone, as vLLM's are
up to batch-composition float noise, and which hands finished prompts to the callback in an order unlike the
prompt order (streaming). Rewards are a hash of the decoded text, so groups with equal and unequal rewards occur
and dynamic sampling takes several rounds."""

from __future__ import annotations

import hashlib
from concurrent.futures import Future
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from srpo_mcore.algorithm.sampling import DynamicSampler, HistoryResamplingSampler, VanillaSampler
from srpo_mcore.rewards.manager import RewardResult
from srpo_mcore.rollout.engine import RolloutSample
from srpo_mcore.train.collect import DomainRequest, collect_groups, interleave
from srpo_mcore.train.metrics import PhaseTimer

N = 3
MATH, CODE = list(range(0, 12)), list(range(12, 20))


class Engine:
    tp_rank, group_ranks = 0, [0]

    def __init__(self, finish_order: str = "reversed"):
        self.finish_order = finish_order
        self.calls: list[list[str]] = []  # the domains of each call's prompts, in call order

    def generate(self, prompts, n, options, *, seed, on_prompt_done=None):
        self.calls.append([("math" if p[0] < 100 else "code") for p in prompts])
        samples = []
        for i, (p, s) in enumerate(zip(prompts, seed, strict=True)):
            for j in range(n):
                rng = np.random.default_rng([*p, s + j])
                tokens = rng.integers(3, 50, int(rng.integers(1, 6))).tolist()
                samples.append(RolloutSample(i, j, tuple(p), torch.tensor(tokens, dtype=torch.int32),
                                             torch.tensor(rng.normal(size=len(tokens)), dtype=torch.float32),
                                             "stop" if tokens[-1] % 2 else "length", 1))
        order = range(len(prompts))
        for i in (reversed(order) if self.finish_order == "reversed" else order):
            if on_prompt_done is not None:
                on_prompt_done(i, samples[i * n:(i + 1) * n])
        return samples


class Rewards:
    def submit(self, requests):
        out = []
        for r in requests:
            f = Future()
            win = int(hashlib.sha256(r.response.encode()).digest()[0] % 4 == 0)  # ~44% of groups all-equal
            f.set_result(RewardResult(float(win), float(win), True, 0.0, float(win), "ok"))
            out.append(f)
        return out


class Tokenizer:
    eos_token_id = 2

    def batch_decode(self, rows, skip_special_tokens=True):
        return [",".join(map(str, ids)) for ids in rows]


def prompt_table():
    def make(i, domain):
        tokens = (i + (0 if domain == "math" else 100), 7, i % 5 + 1)  # first token says the domain
        return SimpleNamespace(index=i, domain=domain, token_ids=tokens, ground_truth="1",
                               record=SimpleNamespace(id=f"{domain}-{i}", problem="?"))
    return [make(i, "math") for i in MATH] + [make(i, "code") for i in CODE]


def sampler(strategy, ids):
    if strategy == "dynamic":
        return DynamicSampler(ids, seed=7, oversample_factor=1.5, max_rounds=4)
    if strategy == "history_resampling":
        return HistoryResamplingSampler(ids, seed=7)
    return VanillaSampler(ids, seed=7)


def run(strategy, math_groups, code_groups, finish_order="reversed", step=3):
    engine = Engine(finish_order)
    cfg = SimpleNamespace(train=SimpleNamespace(prompts_per_step=math_groups + code_groups, samples_per_prompt=N,
                                                seed=11),
                          rollout=SimpleNamespace(max_response_length=8, temperature=1.0, top_p=1.0))
    samplers = {"math": sampler(strategy, MATH), "code": sampler(strategy, CODE)}
    ctx = SimpleNamespace(cfg=cfg, samplers=samplers, prompts=prompt_table(), tokenizer=Tokenizer(),
                          stages=SimpleNamespace(prompt_counts=lambda b: SimpleNamespace(math=math_groups,
                                                                                         code=code_groups)),
                          live_engine=lambda: engine, live_rewards=lambda: Rewards())
    samples, metrics = collect_groups(ctx, step, PhaseTimer())
    rows = [(s.group, s.prompt_id, s.domain, tuple(s.response_ids.tolist()), s.reward, s.finish_reason)
            for s in samples]
    return rows, metrics, {d: s.state_dict() for d, s in samplers.items()}, engine.calls


def regroup(rows, first_group):
    return [(g + first_group, *rest) for g, *rest in rows]


@pytest.mark.parametrize("strategy", ["vanilla", "history_resampling", "dynamic"])
def test_combined_collect_keeps_what_each_domain_keeps_alone(strategy):
    rows, metrics, states, calls = run(strategy, 4, 3)
    math_rows, math_metrics, math_states, math_calls = run(strategy, 4, 0)
    code_rows, code_metrics, code_states, code_calls = run(strategy, 0, 3)
    assert rows == math_rows + regroup(code_rows, len(math_rows) // N)  # math groups first, then code
    assert states == {"math": math_states["math"], "code": code_states["code"]}
    for key, value in metrics.items():
        if key != "sampling/rollouts_generated":
            assert value == (math_metrics if key.startswith("sampling/math") else code_metrics)[key], key
    assert metrics["sampling/rollouts_generated"] == (math_metrics["sampling/rollouts_generated"]
                                                      + code_metrics["sampling/rollouts_generated"])
    # One engine call per round for both domains, not one per domain and round.
    assert len(calls) == max(len(math_calls), len(code_calls))
    assert set(calls[0]) == {"math", "code"}
    if strategy == "dynamic":
        assert len(calls) > 1 and metrics["sampling/math_groups_dropped_equal_rewards"] > 0


def test_result_does_not_depend_on_finishing_order():
    assert run("dynamic", 4, 3, "reversed")[:3] == run("dynamic", 4, 3, "in_order")[:3]


def test_seeds_change_with_the_step():
    assert run("vanilla", 4, 3, step=3)[0] != run("vanilla", 4, 3, step=4)[0]


def test_interleave_spreads_every_domain_over_the_call():
    math = DomainRequest("math", [10, 11, 12, 13, 14, 15], [0] * 6)
    code = DomainRequest("code", [20, 21], [0] * 2)
    order = interleave([math, code])
    assert sorted(order) == [(0, j) for j in range(6)] + [(1, 0), (1, 1)]
    first_half, second_half = order[:4], order[4:]
    assert {k for k, _ in first_half} == {0, 1} and {k for k, _ in second_half} == {0, 1}
    assert [j for k, j in order if k == 0] == list(range(6))  # each domain keeps its request order
