"""Decode rollouts and score them with the rule rewards, spread over all ranks.

Two ways, with the same result (the same texts and rewards on every rank):

- :func:`score_rollouts`, after generation: every rank holds every rollout; rank ``r`` decodes and scores samples
  ``r, r + world, ...`` (math verification and sandboxed code tests are the expensive part, and decoding every
  response on every rank would cost each rank as much as the whole job's decoding).
- :class:`StreamingScorer`, during generation: it is the engine's ``on_prompt_done`` callback, so each prompt's
  samples go to the reward manager (``RewardManager.submit``) as soon as vLLM finishes them, while the other
  prompts still generate. A rank only sees its own engine's samples then; the ranks of one engine hold the same
  ones, so TP rank ``t`` of ``T`` takes the samples whose global index ``prompt * n + j`` is ``t`` mod ``T``.
  :meth:`StreamingScorer.finish` waits for the scores.

Either way the texts and scores are all-gathered at the end (one ``all_gather_object``), so every rank ends
with the same list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from srpo_mcore.tasks.prompts import Prompt

if TYPE_CHECKING:  # annotations only
    from concurrent.futures import Future

    from transformers import PreTrainedTokenizerBase

    from srpo_mcore.rewards.manager import RewardManager, RewardRequest, RewardResult
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
    samples = _unscored(rollouts, prompts)
    world, rank = _world()
    mine = list(range(rank, len(samples), world))
    texts = tokenizer.batch_decode([torch.as_tensor(samples[i].response_ids).tolist() for i in mine],
                                   skip_special_tokens=True)
    results = rewards.score([_request(samples[i], text, prompts) for i, text in zip(mine, texts)])
    _gather_into(samples, [_row(i, text, r) for i, text, r in zip(mine, texts, results)])
    n = samples_per_prompt
    return [samples[i:i + n] for i in range(0, len(samples), n)]


class StreamingScorer:
    """Scores one ``RolloutEngine.generate`` call's samples while it runs (pass :meth:`on_prompt_done` as its
    callback), then :meth:`finish` with the returned rollouts. ``share = (t, T)``: this rank's TP rank and the
    engine's TP size; the rank scores the samples of its engine whose global index is ``t`` mod ``T``."""

    def __init__(self, prompts: Sequence[Prompt], tokenizer: PreTrainedTokenizerBase, rewards: RewardManager,
                 samples_per_prompt: int, *, share: tuple[int, int] = (0, 1)):
        if not 0 <= share[0] < share[1]:
            raise ValueError(f"share {share}: need 0 <= TP rank < TP size")
        self.prompts, self.tokenizer, self.rewards = prompts, tokenizer, rewards
        self.n, (self.tp_rank, self.tp_size) = samples_per_prompt, share
        self._pending: list[tuple[int, str, Future[RewardResult]]] = []

    def on_prompt_done(self, prompt_index: int, samples: Sequence[RolloutSample]) -> None:
        """Decode this rank's share of one prompt's finished samples and submit them for scoring."""
        if any(s.prompt_index != prompt_index for s in samples):
            raise ValueError(f"samples of prompts {sorted({s.prompt_index for s in samples})} handed in as prompt "
                             f"{prompt_index}'s")
        mine = [s for s in samples if (prompt_index * self.n + s.sample_index) % self.tp_size == self.tp_rank]
        if not mine:
            return
        texts = self.tokenizer.batch_decode([s.response_token_ids.tolist() for s in mine], skip_special_tokens=True)
        stubs = _unscored(mine, self.prompts)
        futures = self.rewards.submit([_request(s, text, self.prompts) for s, text in zip(stubs, texts)])
        for s, text, f in zip(mine, texts, futures):
            self._pending.append((prompt_index * self.n + s.sample_index, text, f))

    def finish(self, rollouts: Sequence[RolloutSample]) -> list[list[ScoredSample]]:
        """Wait for this rank's scores, all-gather everyone's, and return what :func:`score_rollouts` would: one
        list of ``n`` scored samples per prompt, in prompt order (collective)."""
        samples = _unscored(rollouts, self.prompts)
        local = [_row(k, text, f.result()) for k, text, f in self._pending]
        self._pending = []
        _gather_into(samples, local)
        return [samples[i:i + self.n] for i in range(0, len(samples), self.n)]


def _world() -> tuple[int, int]:
    return (dist.get_world_size(), dist.get_rank()) if dist.is_initialized() else (1, 0)


def _unscored(rollouts: Sequence[RolloutSample], prompts: Sequence[Prompt]) -> list[ScoredSample]:
    out = []
    for r in rollouts:
        prompt = prompts[r.prompt_index]
        out.append(ScoredSample(
            group=r.prompt_index, prompt_id=prompt.record.id, domain=prompt.domain,
            prompt_ids=r.prompt_token_ids, response_ids=r.response_token_ids, rollout_logprobs=r.logprobs,
            finish_reason=r.finish_reason))
    return out


def _request(sample: ScoredSample, text: str, prompts: Sequence[Prompt]) -> RewardRequest:
    from srpo_mcore.rewards import RewardRequest

    prompt = prompts[sample.group]
    return RewardRequest(sample.domain, text, prompt.ground_truth, sample.prompt_id,
                         prompt=prompt.record.problem)  # its language: the penalty's


def _row(index: int, text: str, r: RewardResult) -> tuple:
    return index, text, r.reward, r.accuracy, r.format_ok, r.language_penalty, r.status


def _gather_into(samples: list[ScoredSample], local: list[tuple]) -> None:
    """All-gather every rank's scored rows (collective) and write them into ``samples``; each sample must be
    scored exactly once across the ranks."""
    world, _ = _world()
    gathered: list = [None] * world
    if world > 1:
        dist.all_gather_object(gathered, local)
    else:
        gathered = [local]
    seen = [0] * len(samples)
    for part in gathered:
        for i, text, reward, accuracy, format_ok, language_penalty, status in part:
            s = samples[i]
            s.response_text, s.reward, s.accuracy = text, reward, accuracy
            s.format_ok, s.language_penalty, s.status = format_ok, language_penalty, status
            seen[i] += 1
    if any(c != 1 for c in seen):
        missing = [i for i, c in enumerate(seen) if c != 1]
        raise RuntimeError(f"samples {missing[:5]} were scored {[seen[i] for i in missing[:5]]} times across the "
                           "ranks, not once (a streamed prompt was not handed to the scorer?)")
