"""StreamingScorer (scores submitted as prompts finish) against the sequential score_rollouts, with the real
RewardManager on a mixed math + code batch; the TP split covers every sample once; a missed prompt fails loudly."""

from __future__ import annotations

import pytest
import torch

from srpo_mcore.config.rewards import RewardConfig
from srpo_mcore.data.records import CodeRecord, CodeTest, MathRecord
from srpo_mcore.rewards import RewardManager
from srpo_mcore.rollout.engine import RolloutSample
from srpo_mcore.tasks.prompts import Prompt
from srpo_mcore.tasks.scoring import StreamingScorer, score_rollouts
from tests.rewards.conftest import bwrap_available  # noqa: F401 - the fixture

N = 3
# Responses, one per (prompt, sample): token ids index into these texts.
TEXTS = ["<think>\nok\n</think>\n\\boxed{4}", "<think>\nok\n</think>\n\\boxed{5}", "no answer at all",
         "<think>\nadd\n</think>\n```python\na, b = map(int, input().split())\nprint(a + b)\n```",
         "<think>\nmul\n</think>\n```python\na, b = map(int, input().split())\nprint(a * b)\n```",
         "<think>\nnone\n</think>\nSorry."]


class Tokenizer:
    def batch_decode(self, rows, skip_special_tokens=True):
        return [TEXTS[row[0]] for row in rows]


def prompts():
    add = CodeRecord(id="add", problem="Add two ints.", tests=[CodeTest(kind="stdin", input="1 2\n", output="3\n"),
                                                               CodeTest(kind="stdin", input="2 2\n", output="4\n")])
    return [Prompt(0, "math", MathRecord(id="m0", problem="2+2?", answer="4"), "", (1, 2)),
            Prompt(1, "code", add, "", (1, 2)),
            Prompt(2, "math", MathRecord(id="m1", problem="2+3?", answer="5"), "", (1, 2))]


def rollouts():
    picks = [[0, 1, 2], [3, 4, 5], [1, 1, 0]]  # text index per (prompt, sample)
    return [RolloutSample(i, j, (1, 2), torch.tensor([t], dtype=torch.int32), torch.zeros(1), "stop", 1)
            for i, row in enumerate(picks) for j, t in enumerate(row)]


def scored(groups):
    return [(s.group, s.prompt_id, s.domain, s.response_text, s.reward, s.accuracy, s.format_ok, s.status)
            for g in groups for s in g]


@pytest.fixture(scope="module")
def rewards(bwrap_available):  # noqa: F811
    with RewardManager(RewardConfig(math_workers=1, code_workers=2, sandbox_backend="bwrap")) as manager:
        yield manager


def test_streamed_scores_equal_sequential_scores(rewards):
    table, samples = prompts(), rollouts()
    scorer = StreamingScorer(table, Tokenizer(), rewards, N)
    for i in (2, 0, 1):  # finishing order differs from prompt order
        scorer.on_prompt_done(i, [s for s in samples if s.prompt_index == i])
    streamed = scored(scorer.finish(samples))
    assert streamed == scored(score_rollouts(samples, table, Tokenizer(), rewards, N))
    assert {row[-1] for row in streamed} >= {"ok", "wrong_answer"}  # the comparison has teeth
    assert len({row[4] for row in streamed}) > 2


class Submitted:
    """Records what a scorer submits (no scoring)."""

    def __init__(self):
        self.ids: list[str] = []

    def submit(self, requests):
        self.ids += [r.response for r in requests]
        return [None] * len(requests)


def test_tp_ranks_split_an_engines_samples_without_overlap():
    table, samples = prompts(), rollouts()
    shares = []
    for t in range(2):
        rewards = Submitted()
        scorer = StreamingScorer(table, Tokenizer(), rewards, N, share=(t, 2))
        for i in range(3):
            scorer.on_prompt_done(i, [s for s in samples if s.prompt_index == i])
        shares.append({k for k, _, _ in scorer._pending})
    assert shares[0].isdisjoint(shares[1]) and shares[0] | shares[1] == set(range(9))


def test_a_prompt_never_handed_to_the_scorer_fails_the_gather(rewards):
    table, samples = prompts(), rollouts()
    scorer = StreamingScorer(table, Tokenizer(), rewards, N)
    for i in (0, 1):
        scorer.on_prompt_done(i, [s for s in samples if s.prompt_index == i])
    with pytest.raises(RuntimeError, match=r"samples \[6, 7, 8\] were scored \[0, 0, 0\] times"):
        scorer.finish(samples)


def test_samples_of_another_prompt_are_refused():
    scorer = StreamingScorer(prompts(), Tokenizer(), Submitted(), N)
    with pytest.raises(ValueError, match="handed in as prompt 1"):
        scorer.on_prompt_done(1, rollouts()[:3])
