"""pass@1 averaged over k samples per problem (the paper's AIME24 protocol, k = 32), through the rollout engine
and the rule rewards. Used by the trainer's periodic evaluation, by ``python -m srpo_mcore.eval`` and by the
curation's pass@k difficulty grading (a problem's solve rate is its pass@1)."""

from __future__ import annotations

from collections.abc import Sequence

from srpo_mcore.config.rollout import RolloutConfig
from srpo_mcore.tasks.prompts import PromptTable
from srpo_mcore.tasks.scoring import score_rollouts


def problem_pass_at_1(samples: Sequence) -> float:
    """One problem's pass@1: the fraction of its samples that are correct (``accuracy`` is 0 or 1)."""
    return sum(s.accuracy for s in samples) / len(samples)


def evaluate_pass_at_1(engine, prompts: PromptTable, tokenizer, rewards, rollout: RolloutConfig, *, k: int,
                       seed: int, prefix: str = "eval/", return_samples: bool = False):
    """Generate ``k`` samples for every prompt, score them, and report mean accuracy per domain and overall:
    ``pass@1 = mean over problems of (correct samples / k)``.

    With ``return_samples`` also returns the scored samples, one list of ``k`` per prompt in ``prompts`` order
    (``ScoredSample``: ``prompt_id``, ``response_text``, ``reward``, ``accuracy``, ``status``, ...)."""
    from srpo_mcore.rollout.engine import SamplingOptions

    options = SamplingOptions.from_config(rollout, stop_token_ids=[tokenizer.eos_token_id])
    rollouts = engine.generate([p.token_ids for p in prompts.prompts], k, options, seed=seed)
    groups = score_rollouts(rollouts, prompts.prompts, tokenizer, rewards, k)
    metrics: dict[str, float] = {}
    for domain in ("math", "code"):
        per_problem = [problem_pass_at_1(g) for g in groups if g[0].domain == domain]
        if per_problem:
            metrics[f"{prefix}{domain}_pass@1"] = sum(per_problem) / len(per_problem)
    all_problems = [problem_pass_at_1(g) for g in groups]
    metrics[f"{prefix}accuracy"] = sum(all_problems) / len(all_problems)
    metrics[f"{prefix}response_length_mean"] = sum(len(s.response_ids) for g in groups for s in g) / (len(groups) * k)
    return (metrics, groups) if return_samples else metrics
