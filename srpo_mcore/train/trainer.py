"""The SRPO training loop. ``run_training`` builds everything, then each step reads top to bottom:

    prompts  --rollout-->  samples  --reward-->  scores  --advantage-->  micro-batches
             --old log-probs (stale-weight guard)-->  --train (loss, optimizer)-->  --sync weights-->  vLLM

A step of one optimizer update (``train.mini_batches_per_step: 1``, the default) is on-policy: the old log-probs
equal the current policy's, so the training forward supplies them (detached) and the guard judges that forward's
log-probs right after the update (``train.old_logprobs: auto``); several updates, or ``train.old_logprobs:
recompute``, run a separate forward-only pass first and the guard judges before any update.

Every rank runs this same program (SPMD under torchrun): vLLM workers and Megatron shards live side by side,
and every decision (which prompts, which groups to keep, when to stop) is made identically on all ranks from
data that all ranks hold. Weight sync is the loop's one back-edge, from trainer to rollout engine.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from srpo_mcore.algorithm.advantages import ESTIMATORS
from srpo_mcore.algorithm.reflection import ReflectionCounter
from srpo_mcore.algorithm.sampling import PromptSampler, build_prompt_sampler
from srpo_mcore.algorithm.stages import TwoStageSchedule
from srpo_mcore.config import RUN_CONFIG_IN_HF_EXPORT, SRPOConfig, to_yaml
from srpo_mcore.distributed import ParallelState
from srpo_mcore.job import Job, inject_fault, job
from srpo_mcore.model.forward import MicroBatch, sequence_multiple
from srpo_mcore.tasks.prompts import PromptTable
from srpo_mcore.tasks.scoring import ScoredSample
from srpo_mcore.train.batch import build_micro_batches, padding_fraction, plan_rank_micro_batches
from srpo_mcore.train.checkpoint import EXIT_CHECKPOINTED_ON_SIGNAL, CheckpointManager
from srpo_mcore.train.collect import collect_groups
from srpo_mcore.train.metrics import MetricsLogger, PhaseTimer
from srpo_mcore.train.policy import Policy
from srpo_mcore.train.profile import profiled

if TYPE_CHECKING:  # annotations only: the rollout engine, vLLM and transformers load when a run builds them
    from transformers import PreTrainedTokenizerBase

    from srpo_mcore.rewards.manager import RewardManager
    from srpo_mcore.rollout.engine import RolloutEngine
    from srpo_mcore.rollout.guard import MismatchGuard
    from srpo_mcore.rollout.weight_sync import WeightSync
    from srpo_mcore.tasks.replay import RolloutRecorder, RolloutReplay

logger = logging.getLogger("srpo_mcore.train")


# ------------------------------------------------------------------------------------------------ one step


@dataclass
class StepContext:
    """What a step needs, built once by :func:`run_training`."""

    cfg: SRPOConfig
    state: ParallelState
    prompts: PromptTable
    samplers: dict[str, PromptSampler]  # one per domain
    stages: TwoStageSchedule
    engine: RolloutEngine | None  # None in a replay
    weight_sync: WeightSync | None  # None in a replay
    rewards: RewardManager | None  # None in a replay
    guard: MismatchGuard
    policy: Policy
    tokenizer: PreTrainedTokenizerBase
    reflection: ReflectionCounter
    eval_prompts: PromptTable | None = None
    replay: RolloutReplay | None = None  # saved rollouts instead of vLLM + rewards (train.replay_dir)
    recorder: RolloutRecorder | None = None  # writes each step's rollouts (train.save_rollouts)

    def live_engine(self) -> RolloutEngine:
        """The rollout engine; a replay (``train.replay_dir``) has none (it neither samples nor evaluates)."""
        if self.engine is None:
            raise RuntimeError("no rollout engine: this run replays saved rollouts (train.replay_dir)")
        return self.engine

    def live_rewards(self) -> RewardManager:
        """The reward manager; a replay reads the saved rewards instead."""
        if self.rewards is None:
            raise RuntimeError("no reward manager: this run replays saved rollouts (train.replay_dir)")
        return self.rewards


def srpo_step(ctx: StepContext, step: int) -> dict[str, float]:
    cfg, timer = ctx.cfg, PhaseTimer()
    metrics: dict[str, float] = {}

    # 1-2. Rollout and reward, group by group, until the samplers have assembled the step's batch (or, in a
    #      replay, the batch a recorded run assembled at this step).
    if ctx.replay is not None:
        with timer("replay"):
            samples, sampling_metrics = ctx.replay.load_step(step, ctx.samplers)
    else:
        samples, sampling_metrics = collect_groups(ctx, step, timer)
        ctx.live_engine().sleep()  # GPU with sleep mode: hand the KV cache (and weights) to training; no-op on CPU
    if ctx.recorder is not None:
        ctx.recorder.save(step, samples, sampling_metrics, {d: s.state_dict() for d, s in ctx.samplers.items()})
    metrics.update(sampling_metrics)
    inject_fault(cfg.debug.kill_rank0_at_step == step, f"in the middle of step {step}")  # resume tests

    # 3. Advantages: group-normalised rewards; truncated responses and equal-reward groups get 0.
    with timer("advantage"):
        metrics.update(assign_advantages(samples, cfg))

    # 4. Micro-batches, then the PPO "old" log-probs of the sampled tokens and the stale-weight guard. A step of one
    #    update from fresh rollouts is on-policy: its training forward gives them (detached), with no separate pass
    #    (train.old_logprobs=auto); several updates (or train.old_logprobs=recompute) take them from a forward-only
    #    pass, judged by the guard before any update. The KL reference (algorithm.kl_coef > 0) has its own pass.
    with timer("micro_batches"):
        mini_batches = split_mini_batches(samples, mini_batch_count(samples, cfg))
        micro = [build_rank_micro_batches(ctx, mb) for mb in mini_batches]
        metrics["train/padding_fraction"] = step_padding_fraction(micro)
    on_policy = cfg.train.old_logprobs == "auto" and len(micro) == 1
    metrics["train/old_logprob_pass"] = 0.0 if on_policy else 1.0
    if not on_policy:
        with timer("logprobs"):
            rollout_lp, trainer_lp = zip(*(ctx.policy.compute_old_logprobs(m) for m in micro))
            guard = ctx.guard.update(torch.cat(rollout_lp), torch.cat(trainer_lp), group=dist.group.WORLD)
        metrics.update(guard.as_metrics())
    if ctx.policy.reference is not None:
        with timer("reference"):
            for m in micro:
                ctx.policy.compute_reference_logprobs(m)

    # 5. Policy update(s): fused token-level GRPO loss -> Megatron backward -> AdamW. On the on-policy path the
    #    guard judges the update's own forward next, after the update but before the weight sync, the step's
    #    metrics and any checkpoint of it (an alarm with mismatch_alarm_action=raise stops the run here).
    with timer("train"):
        for group_samples, micro_batches in zip(mini_batches, micro):
            tokens = float(sum(len(s.response_ids) for s in group_samples))
            metrics.update(ctx.policy.train_step(micro_batches, global_tokens=tokens,
                                                 global_sequences=float(len(group_samples)),
                                                 old_from_forward=on_policy))
        if on_policy:
            guard = ctx.guard.update(*ctx.policy.guard_logprobs(micro[0]), group=dist.group.WORLD)
            metrics.update(guard.as_metrics())

    # 6. Weight sync, trainer -> vLLM: the loop's one back-edge (on GPU it also wakes the sleeping engine).
    if ctx.weight_sync is not None and cfg.debug.skip_weight_sync_at_step == step:
        logger.warning("debug.skip_weight_sync_at_step=%d: the engine keeps the previous weights (stale push)", step)
    elif ctx.weight_sync is not None:
        with timer("sync"):
            sync = ctx.weight_sync.sync(ctx.live_engine())
        metrics["sync/gb_per_s"] = sync.gb_per_s

    metrics.update(response_metrics(ctx, samples))
    metrics.update(timer.pop())
    total = sum(v for k, v in metrics.items() if k.startswith("time/"))
    metrics["time/step_s"] = total
    metrics["throughput/tokens_per_s"] = sum(s.length for s in samples) / max(total, 1e-9)
    return metrics


def assign_advantages(samples: list[ScoredSample], cfg: SRPOConfig) -> dict[str, float]:
    n = cfg.train.samples_per_prompt
    if not samples:
        raise RuntimeError("the step collected no samples (every group was dropped); see sampling/* metrics")
    rewards = torch.tensor([s.reward for s in samples], dtype=torch.float64).reshape(-1, n)
    truncated = torch.tensor([s.finish_reason == "length" for s in samples]).reshape(-1, n)
    estimator = ESTIMATORS[cfg.algorithm.advantage_estimator]
    result = estimator(rewards, truncated, normalize_by_std=cfg.algorithm.normalize_advantage_by_std,
                       eps=cfg.algorithm.advantage_eps, zero_truncated=cfg.algorithm.overlong_zero_advantage)
    for s, a in zip(samples, result.flat().tolist()):
        s.advantage = a
    return {"advantage/zero_group_fraction": result.zero_advantage_fraction,
            "advantage/informative_groups": float((~result.zero_advantage).sum()),
            "advantage/equal_reward_group_fraction": result.equal_reward_fraction,
            "advantage/abs_mean": float(result.advantages.abs().mean())}


def split_mini_batches(samples: list[ScoredSample], k: int) -> list[list[ScoredSample]]:
    """Exactly ``k`` mini-batches of whole groups (a group's samples stay together), in group order, as balanced
    as possible: the first ``groups % k`` mini-batches hold one group more than the rest. Raises ``ValueError``
    when there are fewer groups than ``k``."""
    groups: dict[int, list[ScoredSample]] = {}
    for s in samples:
        groups.setdefault(s.group, []).append(s)
    ordered = list(groups.values())
    if k < 1 or k > len(ordered):
        raise ValueError(f"cannot split {len(ordered)} groups into train.mini_batches_per_step={k} mini-batches of "
                         "whole groups (need 1 <= k <= groups)")
    base, extra = divmod(len(ordered), k)
    out, start = [], 0
    for i in range(k):
        end = start + base + (1 if i < extra else 0)
        out.append([s for g in ordered[start:end] for s in g])
        start = end
    return out


def mini_batch_count(samples: list[ScoredSample], cfg: SRPOConfig) -> int:
    """``train.mini_batches_per_step``, or fewer when a short batch (sampler out of rounds or prompts) kept fewer
    groups than that: one update per kept group then, logged."""
    groups = len({s.group for s in samples})
    k = cfg.train.mini_batches_per_step
    if groups < k:
        logger.warning("the step kept %d groups, fewer than train.mini_batches_per_step=%d: %d updates this step",
                       groups, k, groups)
    return min(k, groups)


def build_rank_micro_batches(ctx: StepContext, samples: list[ScoredSample]):
    index_lists = plan_rank_micro_batches(samples, dp_rank=ctx.state.dp_rank, dp_size=ctx.state.dp_size,
                                          token_budget=ctx.cfg.train.max_tokens_per_micro_batch)
    return build_micro_batches(samples, index_lists, pad_id=ctx.tokenizer.pad_token_id or 0,
                               uniform_shape=ctx.state.pp_size > 1, device=ctx.state.device,
                               seq_multiple=sequence_multiple(ctx.cfg.parallel))


def step_padding_fraction(micro: list[list[MicroBatch]]) -> float:
    """Padded / processed tokens of the step's packed micro-batches, over all ranks (every model-parallel rank of a
    pipeline counts the same rows, which scales both sums alike)."""
    padded, processed = map(sum, zip(*(padding_fraction(m) for m in micro)))
    totals = torch.tensor([padded, processed], dtype=torch.float64)
    dist.all_reduce(totals)
    return float(totals[0] / totals[1].clamp(min=1.0))


def response_metrics(ctx: StepContext, samples: list[ScoredSample]) -> dict[str, float]:
    out: dict[str, float] = {}
    for domain in ("math", "code"):
        mine = [s for s in samples if s.domain == domain]
        if mine:
            out[f"reward/{domain}_mean"] = sum(s.reward for s in mine) / len(mine)
            out[f"accuracy/{domain}_mean"] = sum(s.accuracy for s in mine) / len(mine)
    out["reward/mean"] = sum(s.reward for s in samples) / len(samples)
    out["accuracy/mean"] = sum(s.accuracy for s in samples) / len(samples)
    out["response/length_mean"] = sum(len(s.response_ids) for s in samples) / len(samples)
    out["response/truncated_fraction"] = sum(s.finish_reason == "length" for s in samples) / len(samples)
    out["response/format_ok_fraction"] = sum(bool(s.format_ok) for s in samples) / len(samples)
    stats = ctx.reflection.measure([s.response_text for s in samples], [len(s.response_ids) for s in samples])
    out.update(stats.as_metrics())
    return out


# --------------------------------------------------------------------------------------------- the run


class PreemptionFlag:
    """SIGTERM (SLURM preemption, torchrun shutdown) asks for a checkpoint at the next step boundary; all ranks
    agree on it through one all-reduce per step, so they stop at the same step."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def agreed(self) -> bool:
        flag = torch.tensor([1.0 if self.requested else 0.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def trainer_state(ctx: StepContext) -> dict:
    return {"samplers": {d: s.state_dict() for d, s in ctx.samplers.items()}, "stages": ctx.stages.state_dict(),
            "guard_baseline": ctx.guard.baseline, "lr_scheduler": ctx.policy.lr_scheduler.state_dict()}


def restore_trainer_state(ctx: StepContext, state: dict) -> None:
    missing = [k for k in ("samplers", "stages", "lr_scheduler") if k not in state]
    if missing or any("prompts" not in s for s in state["samplers"].values()):
        raise RuntimeError(f"the checkpoint's trainer_state.json lacks {missing or 'samplers.*.prompts'}: it was written "
                           "by an older srpo-mcore (before the LR schedule and content-keyed sampler state); resume it "
                           "with that version or start a new train.run_dir")
    for domain, sampler in ctx.samplers.items():
        sampler.load_state_dict(state["samplers"][domain])
    ctx.stages.load_state_dict(state["stages"])
    ctx.guard.baseline = state.get("guard_baseline")
    ctx.policy.lr_scheduler.load_state_dict(state["lr_scheduler"])


def build_samplers(cfg: SRPOConfig, prompts: PromptTable) -> dict[str, PromptSampler]:
    samplers = {}
    for offset, domain in enumerate(("math", "code")):
        ids = prompts.by_domain[domain]
        if ids:
            samplers[domain] = build_prompt_sampler(cfg.sampling, ids, seed=cfg.train.seed + offset,
                                                    keys=[prompts[i].key for i in ids],
                                                    labels=[prompts[i].record.id for i in ids])
    return samplers


def run_training(cfg: SRPOConfig) -> int:
    """Build, resume or initialise, loop, close. Returns the process exit code. ``cfg`` is validated (world size
    included), its input files and data rows checked and the process environment set by the entry point,
    pretrain_srpo.py; the job's logging, process groups and shutdown order are ``srpo_mcore.job``'s."""
    run_dir = Path(cfg.train.run_dir)
    with job(cfg, log_dir=run_dir / "logs", seed=cfg.train.seed) as j:
        state = j.state
        if state.rank == 0:
            (run_dir / "config.yaml").write_text(to_yaml(cfg))
        ctx = build_step_context(cfg, j)
        policy, tokenizer = ctx.policy, ctx.tokenizer
        checkpoints = CheckpointManager(run_dir, cfg.train.keep_last_checkpoints)
        start_step = 0
        latest = checkpoints.latest()
        policy.load_initial_weights(cfg.train.init_checkpoint, policy=latest is None)
        if latest is not None:
            resumed = checkpoints.load(latest, policy.chunk, policy.optimizer)
            restore_trainer_state(ctx, resumed.trainer_state)
            start_step = resumed.step
            logger.info("resumed from %s (step %d)", latest, start_step)
        else:
            logger.info("initialised the policy from %s", cfg.train.init_checkpoint)
        if ctx.weight_sync is not None:
            ctx.weight_sync.sync(ctx.live_engine())

        metrics = MetricsLogger(run_dir, cfg.logging, is_writer=state.rank == 0, total_steps=cfg.train.steps,
                                start_step=start_step)
        j.on_close(metrics.close)
        preemption = PreemptionFlag()
        exit_code = 0
        eval_interval = cfg.train.eval_interval if ctx.replay is None else 0  # evaluation samples from the engine
        if start_step == 0 and eval_interval:
            metrics.log(0, evaluate(ctx))
        for step in range(start_step + 1, cfg.train.steps + 1):
            started = time.perf_counter()
            with profiled(step in cfg.debug.profile_steps, run_dir / "profile", step, state.rank):
                record = srpo_step(ctx, step)
            record["stage/current"] = float(ctx.stages.stage)  # the stage this step's batch was drawn in
            evaluated = bool(eval_interval) and step % eval_interval == 0
            if evaluated:
                record.update(evaluate(ctx))
            switch = ctx.stages.observe(step, stage_probe_score(cfg, record) if evaluated else None)
            if switch is not None:
                metrics.message(switch.message())
                record["stage/switched"] = 1.0  # the next step is the first of stage 2
            # wall clock of the iteration up to here: the phases, what lies between them, and an evaluation if
            # one ran (time/step_s sums the phases only); checkpoint saving comes after
            record["time/iteration_s"] = time.perf_counter() - started
            metrics.log(step, record)
            stop = preemption.agreed()
            if stop or (cfg.train.save_interval and step % cfg.train.save_interval == 0) or step == cfg.train.steps:
                checkpoints.save(step, policy.chunk, policy.optimizer, trainer_state(ctx))
            if stop:
                metrics.message(f"SIGTERM: checkpointed step {step}; exiting with {EXIT_CHECKPOINTED_ON_SIGNAL} "
                                "for a requeue")
                exit_code = EXIT_CHECKPOINTED_ON_SIGNAL
                break
        if exit_code == 0 and cfg.train.export_hf_at_end:
            from srpo_mcore.model.hf_checkpoint import save_hf_checkpoint

            save_hf_checkpoint(policy.chunk, cfg.model, run_dir / "hf_final", dtype=cfg.model.params_dtype,
                               tp_group=state.tp_group, tp_size=state.tp_size, tp_rank=state.tp_rank,
                               dp_rank=state.dp_rank)
            if state.rank == 0:
                tokenizer.save_pretrained(str(run_dir / "hf_final"))
                # the run's settings (templates, lengths, rewards) travel with the export; eval --hf reads them
                (run_dir / "hf_final" / RUN_CONFIG_IN_HF_EXPORT).write_text(to_yaml(cfg))
        if state.rank == 0 and cfg.logging.jsonl:
            from srpo_mcore.train.plots import render

            metrics.message(f"curves: {render(run_dir)}")
    return exit_code


def build_step_context(cfg: SRPOConfig, j: Job) -> StepContext:
    """Tokenizer, prompts, policy, engine, weight sync, rewards, guard (in a replay: the saved rollouts instead of
    engine, weight sync and rewards); what needs closing is registered with ``j``."""
    from transformers import AutoTokenizer

    from srpo_mcore.rewards import RewardManager
    from srpo_mcore.rollout.engine import resolve_rollout_dtype
    from srpo_mcore.rollout.guard import MismatchGuard
    from srpo_mcore.rollout.weight_sync import WeightSync
    from srpo_mcore.tasks.replay import RolloutRecorder, RolloutReplay

    tokenizer = AutoTokenizer.from_pretrained(cfg.train.init_checkpoint)
    prompts = PromptTable.load(cfg, tokenizer)
    if cfg.stages.two_stage and not prompts.by_domain["code"]:
        raise SystemExit("error: stages.two_stage is true, but data.code_train_files gave no code prompts: stage 2 "
                         "(math + code) needs code data (or set stages.two_stage=false)")
    logger.info("%d training prompts (math %d, code %d)", len(prompts), len(prompts.by_domain["math"]),
                len(prompts.by_domain["code"]))
    policy = Policy(cfg, j.state)
    replay = RolloutReplay(cfg.train.replay_dir) if cfg.train.replay_dir else None
    engine: RolloutEngine | None = None
    weight_sync: WeightSync | None = None
    rewards: RewardManager | None = None
    if replay is None:
        engine = j.start_engine(cfg, seed=cfg.train.seed)
        weight_sync = WeightSync(policy.chunk, cfg.model, j.state, cfg.rollout,
                                 dtype=resolve_rollout_dtype(cfg.rollout, cfg.model))
        j.on_close(weight_sync.close)
        rewards = RewardManager(cfg.rewards)
        j.on_close(rewards.close)
    else:
        logger.info("replaying the rollouts of %s: no rollout engine, rewards or evaluation", replay.directory)
    recorder = (RolloutRecorder(Path(cfg.train.run_dir) / "rollouts", cfg, tokenizer, is_writer=j.state.rank == 0)
                if cfg.train.save_rollouts else None)
    return StepContext(
        cfg=cfg, state=j.state, prompts=prompts, samplers=build_samplers(cfg, prompts),
        stages=TwoStageSchedule(cfg.stages), engine=engine, weight_sync=weight_sync, rewards=rewards,
        guard=MismatchGuard.from_config(cfg.rollout, raise_on_alarm=cfg.train.mismatch_alarm_action == "raise"),
        policy=policy, tokenizer=tokenizer, reflection=ReflectionCounter(cfg.reflection), replay=replay,
        recorder=recorder)


def stage_probe_score(cfg: SRPOConfig, record: dict[str, float]) -> float | None:
    """What the stage-1 plateau rule reads after an evaluation: the held-out math pass@1 (a fixed problem set)."""
    score = record.get("eval/math_pass@1")
    if score is None and cfg.stages.two_stage and cfg.stages.plateau_window > 0:
        raise SystemExit(f"error: stages.plateau_window reads the held-out math pass@1, but data.eval_files "
                         f"({', '.join(cfg.data.eval_files)}) hold no math problems")
    return score


def evaluate(ctx: StepContext) -> dict[str, float]:
    """Held-out pass@1 (mean over ``train.eval_samples_per_prompt`` samples) on ``data.eval_files``."""
    from srpo_mcore.tasks.pass_at_k import evaluate_pass_at_1

    if ctx.eval_prompts is None:
        ctx.eval_prompts = PromptTable.load_mixed(ctx.cfg, ctx.tokenizer, ctx.cfg.data.eval_files)
    return evaluate_pass_at_1(ctx.live_engine(), ctx.eval_prompts, ctx.tokenizer, ctx.live_rewards(),
                              ctx.cfg.rollout, k=ctx.cfg.train.eval_samples_per_prompt, seed=ctx.cfg.train.seed + 7)
