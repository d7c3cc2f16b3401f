"""Rollout and reward for one step: the samplers' requests of every domain in one engine call per round, each
prompt scored as soon as vLLM finishes it.

A round asks every domain's :class:`~srpo_mcore.algorithm.sampling.BatchAssembly` that still wants groups for
its next request (vanilla and History Resampling want one round; dynamic sampling goes on until its batch is
full or its rounds are spent), generates all of them in one ``RolloutEngine.generate`` call, and hands each
domain its outcomes in its request's order. So SRPO's stage 2 generates math and code together, and the
rewards of finished prompts (math verification, the code sandbox) run while the engine still generates
(:class:`~srpo_mcore.tasks.scoring.StreamingScorer`).

Seeds: one per round, ``train.seed * 1_000_003 + step * 101 + round`` (rounds count from 1). A prompt's request
seed is ``request_seed(round seed * 2 + d, j)`` for domain ``d`` (math 0, code 1) and its position ``j`` in that
domain's request: it does not depend on the other domain's prompts or on where the prompt sits in the engine
call, so a domain generates the same samples as it would alone under the same round seeds (up to vLLM's
batch-composition float noise).

Order: within a call the domains' prompts are interleaved in proportion (so each engine's contiguous block holds
a share of both, and the code sandbox work is spread over the engines); the kept groups come back per domain,
math then code, each in its rounds' and requests' order, as every rank computes them identically from the
gathered samples.

``time/rollout_s`` is the engine call (including the decode and submit of finished prompts, which run on this
thread between engine steps); ``time/reward_s`` is what scoring still takes after generation ends (waiting for
the last scores, and the all-gather).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from srpo_mcore.algorithm.sampling import BatchAssembly, GroupOutcome
from srpo_mcore.rollout.engine import request_seed
from srpo_mcore.tasks.scoring import ScoredSample, StreamingScorer
from srpo_mcore.train.metrics import PhaseTimer

if TYPE_CHECKING:
    from srpo_mcore.train.trainer import StepContext

DOMAINS = ("math", "code")  # request-seed stream d of a round, and the order kept groups come back in


@dataclass(frozen=True)
class DomainRequest:
    """One domain's share of a round: the prompt ids its assembly asked for and their request seeds."""

    domain: str
    prompt_ids: list[int]
    seeds: list[int]


def round_seed(seed: int, step: int, round_index: int) -> int:
    """The seed of round ``round_index`` (from 1) of ``step``."""
    return seed * 1_000_003 + step * 101 + round_index


def domain_request(domain: str, prompt_ids: list[int], seed: int, n: int) -> DomainRequest:
    stream = seed * len(DOMAINS) + DOMAINS.index(domain)
    return DomainRequest(domain, prompt_ids, [request_seed(stream, j, n) for j in range(len(prompt_ids))])


def interleave(requests: Sequence[DomainRequest]) -> list[tuple[int, int]]:
    """``(request, position)`` pairs of one engine call: every domain's prompts spread evenly over the call (by
    their fractional position in their request; ties in request order), so a contiguous block holds a share of
    each domain."""
    slots = [((j + 0.5) / len(r.prompt_ids), k, j) for k, r in enumerate(requests) for j in range(len(r.prompt_ids))]
    return [(k, j) for _, k, j in sorted(slots)]


def wanted_groups(ctx: StepContext) -> dict[str, int]:
    """Groups per domain this step: the stage schedule's split, or the whole batch when one domain has no data."""
    cfg = ctx.cfg
    if "code" not in ctx.samplers:
        return {"math": cfg.train.prompts_per_step}
    if "math" not in ctx.samplers:
        return {"code": cfg.train.prompts_per_step}
    counts = ctx.stages.prompt_counts(cfg.train.prompts_per_step)
    return {d: w for d, w in (("math", counts.math), ("code", counts.code)) if w > 0}


def collect_groups(ctx: StepContext, step: int, timer: PhaseTimer) -> tuple[list[ScoredSample], dict]:
    """Draw prompts per the stage schedule and each domain's sampler (vanilla, History Resampling or dynamic),
    generate ``samples_per_prompt`` responses each (all domains of a round in one engine call), score them while
    generating, and keep what the samplers keep."""
    from srpo_mcore.rollout.engine import SamplingOptions

    cfg, engine, rewards = ctx.cfg, ctx.live_engine(), ctx.live_rewards()
    n = cfg.train.samples_per_prompt
    options = SamplingOptions.from_config(cfg.rollout, stop_token_ids=[ctx.tokenizer.eos_token_id])
    batches = {d: ctx.samplers[d].begin_batch(w) for d, w in wanted_groups(ctx).items()}
    kept: dict[str, list[list[ScoredSample]]] = {d: [] for d in batches}
    round_index = 0
    while requests := next_requests(batches, cfg.train.seed, step, round_index + 1, n):
        round_index += 1
        order = interleave(requests)
        prompts = [ctx.prompts[requests[k].prompt_ids[j]] for k, j in order]
        scorer = StreamingScorer(prompts, ctx.tokenizer, rewards, n,
                                 share=(engine.tp_rank, len(engine.group_ranks)))
        with timer("rollout"):
            rollouts = engine.generate([p.token_ids for p in prompts], n, options,
                                       seed=[requests[k].seeds[j] for k, j in order],
                                       on_prompt_done=scorer.on_prompt_done)
        with timer("reward"):
            groups = scorer.finish(rollouts)
        by_slot = dict(zip(order, groups, strict=True))
        for k, r in enumerate(requests):
            domain_groups = [by_slot[(k, j)] for j in range(len(r.prompt_ids))]
            keep = batches[r.domain].add([GroupOutcome(pid, tuple(s.reward for s in g),
                                                       tuple(s.accuracy > 0.5 for s in g))
                                          for pid, g in zip(r.prompt_ids, domain_groups, strict=True)])
            kept[r.domain].extend(g for g, k_ in zip(domain_groups, keep) if k_)
    samples = [s for d in DOMAINS if d in kept for g in kept[d] for s in g]
    for group, start in enumerate(range(0, len(samples), n)):
        for s in samples[start:start + n]:
            s.group = group
    return samples, sampling_metrics(ctx, batches, n)


def next_requests(batches: dict[str, BatchAssembly], seed: int, step: int, round_index: int, n: int
                  ) -> list[DomainRequest]:
    """Every unfinished domain's next request, in :data:`DOMAINS` order, seeded for round ``round_index``."""
    out = []
    for domain in DOMAINS:
        if domain in batches and (prompt_ids := batches[domain].next_request()):
            out.append(domain_request(domain, prompt_ids, round_seed(seed, step, round_index), n))
    return out


def sampling_metrics(ctx: StepContext, batches: dict[str, BatchAssembly], n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for domain, batch in batches.items():
        stats = batch.stats
        out[f"sampling/{domain}_groups_kept"] = stats.groups_kept
        out[f"sampling/{domain}_prompts_drawn"] = stats.prompts_drawn  # generated for, kept or not
        out["sampling/rollouts_generated"] = out.get("sampling/rollouts_generated", 0) + stats.prompts_drawn * n
        out[f"sampling/{domain}_groups_dropped_equal_rewards"] = stats.groups_dropped_equal_rewards
        out.update(ctx.samplers[domain].metrics(prefix=f"sampling/{domain}/"))
    return out
