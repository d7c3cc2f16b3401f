"""Decode rollouts and score them with the rule rewards, spread over all ranks.

Every rank holds every rollout; rank ``r`` decodes and scores samples ``r, r + world, ...`` (math verification
and sandboxed code tests are the expensive part, and decoding every response on every rank would cost each rank
as much as the whole job's decoding). The texts and scores are all-gathered, so every rank ends with the same list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from srpo_mcore.tasks.prompts import Prompt

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedTokenizerBase

    from srpo_mcore.rewards.manager import RewardManager
    from srpo_mcore.rollout.engine import RolloutSample


@dataclass
class ScoredSample:
    """One rollout with everything the update needs. ``group`` indexes the prompt within the step. The reward's
    verdict (``format_ok``, ``language_penalty``, ``status``: ok, wrong_answer, no_answer, no_code, timeout, ...; see
    ``rewards.RewardResult``) is ``None`` until :func:`score_rollouts` has scored the sample."""

    group: int
    prompt_id: str
    domain: str
    prompt_ids: Sequence[int]
    response_ids: torch.Tensor | Sequence[int]  # the rollout's int32 tensor view (or a list)
    rollout_logprobs: torch.Tensor | Sequence[float]  # float32, one per response token
    finish_reason: str
    reward: float = 0.0
    accuracy: float = 0.0
    advantage: float = 0.0
    response_text: str = ""
    format_ok: bool | None = None
    language_penalty: float | None = None
    status: str | None = None

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


def score_rollouts(rollouts: Sequence[RolloutSample], prompts: Sequence[Prompt], tokenizer: PreTrainedTokenizerBase,
                   rewards: RewardManager, samples_per_prompt: int) -> list[list[ScoredSample]]:
    """``rollouts`` in global order (prompt-major); ``prompts[i]`` is the prompt of ``rollout.prompt_index == i``.
    Returns one list of ``samples_per_prompt`` scored samples per prompt, in ``prompts`` order."""
    from srpo_mcore.rewards import RewardRequest

    samples = []
    for r in rollouts:
        prompt = prompts[r.prompt_index]
        samples.append(ScoredSample(
            group=r.prompt_index, prompt_id=prompt.record.id, domain=prompt.domain,
            prompt_ids=r.prompt_token_ids, response_ids=r.response_token_ids, rollout_logprobs=r.logprobs,
            finish_reason=r.finish_reason))
    world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_initialized() else (1, 0)
    mine = list(range(rank, len(samples), world))
    texts = tokenizer.batch_decode([torch.as_tensor(samples[i].response_ids).tolist() for i in mine], skip_special_tokens=True)
    requests = [RewardRequest(samples[i].domain, text, prompts[samples[i].group].ground_truth, samples[i].prompt_id,
                              prompt=prompts[samples[i].group].record.problem)  # its language: the penalty's
                for i, text in zip(mine, texts)]
    local = [(i, text, r.reward, r.accuracy, r.format_ok, r.language_penalty, r.status)
             for i, text, r in zip(mine, texts, rewards.score(requests))]
    gathered: list = [None] * world
    if world > 1:
        dist.all_gather_object(gathered, local)
    else:
        gathered = [local]
    for part in gathered:
        for i, text, reward, accuracy, format_ok, language_penalty, status in part:
            samples[i].response_text, samples[i].reward, samples[i].accuracy = text, reward, accuracy
            s = samples[i]
            s.format_ok, s.language_penalty, s.status = format_ok, language_penalty, status
    n = samples_per_prompt
    return [samples[i:i + n] for i in range(0, len(samples), n)]
