"""The prompt's language reaches the reward: score_rollouts gives each request the record's problem text (not the
template around it), which the mixed-language penalty measures the response against."""

from types import SimpleNamespace

import torch

from srpo_mcore.data.records import MathRecord
from srpo_mcore.rewards import RewardRequest
from srpo_mcore.rewards.manager import RewardResult
from srpo_mcore.tasks.prompts import Prompt
from srpo_mcore.tasks.scoring import score_rollouts


class Tokenizer:
    def batch_decode(self, ids, skip_special_tokens=True):
        return ["".join(chr(i) for i in row) for row in ids]


class Recorder:
    def __init__(self):
        self.requests: list[RewardRequest] = []

    def score(self, requests):
        self.requests += requests
        return [RewardResult(1.0, 1.0, True, 0.0, 1.0, "ok") for _ in requests]


def test_requests_carry_the_problem_text():
    records = [MathRecord(id="zh/1", problem="2 + 2 等于多少？", answer="4"),
               MathRecord(id="en/1", problem="What is 2 + 2?", answer="4")]
    template = "A conversation. User: {} Assistant: <think>"  # English instructions around every problem
    prompts = [Prompt(i, "math", r, template.format(r.problem), (1, 2)) for i, r in enumerate(records)]
    rollouts = [SimpleNamespace(prompt_index=i, prompt_token_ids=[1, 2], response_token_ids=torch.tensor([52, 10]),
                                logprobs=torch.zeros(2), finish_reason="stop") for i in (0, 0, 1, 1)]
    rewards = Recorder()
    groups = score_rollouts(rollouts, prompts, Tokenizer(), rewards, samples_per_prompt=2)
    assert [r.prompt for r in rewards.requests] == ["2 + 2 等于多少？"] * 2 + ["What is 2 + 2?"] * 2
    assert [len(g) for g in groups] == [2, 2]
