"""The settings of both sides from one resolved SRPO config: our run's overrides (the stage-1 task) and the
``GRPOConfig`` arguments TRL gets, mapped one to one, plus the table of both that goes into the report.

Pure: no TRL import (the mapping is checked by the unit tests without TRL installed).
"""

from __future__ import annotations

from pathlib import Path

from srpo_mcore.config import SRPOConfig

# our algorithm.loss_aggregation -> TRL's loss_type (TRL 1.16 docs of GRPOConfig.loss_type)
LOSS_TYPES = {
    "token-mean": "dapo",  # sum over the batch's tokens / the global batch's active tokens
    "seq-mean-token-mean": "grpo",  # per-sequence token mean, then the sequences' mean
}


class MappingError(ValueError):
    """A setting of ours with no TRL equivalent: the benchmark refuses rather than compare different algorithms."""


def stage1_overrides(*, data: Path, base: Path, run_dir: Path, steps: int, eval_every: int) -> list[str]:
    """Our run of the stage-1 task (math only), checkpoints at the evaluation steps, no in-run evaluation."""
    return [f"train.run_dir={run_dir}", f"train.init_checkpoint={base}", f"train.steps={steps}",
            "train.eval_interval=0", f"train.save_interval={eval_every}",
            f"train.keep_last_checkpoints={steps // eval_every + 1}", "train.export_hf_at_end=false",
            "stages.two_stage=false", "stages.switch_step=null", "stages.plateau_window=0",
            f"data.math_train_files=[{data / 'train.jsonl'}]", "data.code_train_files=[]",
            f"data.eval_files=[{data / 'heldout.jsonl'}]", "logging.progress_bar=false"]


def trl_arguments(cfg: SRPOConfig, *, steps: int, eval_every: int) -> dict:
    """``GRPOConfig`` keyword arguments equivalent to ``cfg`` (the TRL side adds ``output_dir`` and run plumbing).
    Raises :class:`MappingError` naming the setting TRL cannot reproduce."""
    algo, opt, train, rollout = cfg.algorithm, cfg.optimizer, cfg.train, cfg.rollout
    refuse = {
        "train.mini_batches_per_step": (train.mini_batches_per_step != 1, "must be 1 (one optimizer update per step)"),
        "algorithm.loss_aggregation": (algo.loss_aggregation not in LOSS_TYPES, f"{algo.loss_aggregation!r} has no "
                                       f"TRL loss_type; use one of {list(LOSS_TYPES)}"),
        "algorithm.advantage_estimator": (algo.advantage_estimator != "grpo", "only 'grpo' maps to TRL"),
        "algorithm.dual_clip_c": (algo.dual_clip_c is not None, "TRL has no dual clip"),
        "algorithm.entropy_coef": (algo.entropy_coef != 0.0, "must be 0 (TRL's entropy bonus differs)"),
        "algorithm.tis_cap": (algo.tis_cap is not None, "TRL's importance-sampling correction needs vLLM"),
        "optimizer.min_lr": (opt.lr_schedule != "constant" and opt.min_lr != 0.0, "TRL's decays end at 0"),
    }
    for key, (bad, why) in refuse.items():
        if bad:
            raise MappingError(f"{key}: {why}")
    return {
        "max_steps": steps,
        "per_device_train_batch_size": train.prompts_per_step * train.samples_per_prompt,  # completions
        "gradient_accumulation_steps": 1,
        "num_generations": train.samples_per_prompt,
        "steps_per_generation": 1,  # one generation batch per optimizer update
        "num_iterations": 1,
        "max_completion_length": rollout.max_response_length,
        "temperature": rollout.temperature,
        "top_p": rollout.top_p,
        "top_k": 0,  # off, as vLLM's default in our rollout
        "learning_rate": opt.lr,
        "lr_scheduler_type": opt.lr_schedule,
        "warmup_steps": opt.lr_warmup_steps,
        "adam_beta1": opt.adam_beta1,
        "adam_beta2": opt.adam_beta2,
        "adam_epsilon": opt.adam_eps,
        "weight_decay": opt.weight_decay,
        "max_grad_norm": opt.clip_grad,
        "optim": "adamw_torch",
        "beta": algo.kl_coef,
        "epsilon": algo.clip_eps_low,
        "epsilon_high": algo.clip_eps_high,
        "loss_type": LOSS_TYPES[algo.loss_aggregation],
        "scale_rewards": "group" if algo.normalize_advantage_by_std else "none",
        "mask_truncated_completions": algo.overlong_zero_advantage,
        "seed": train.seed,
        "save_strategy": "steps",
        "save_steps": eval_every,
        "save_only_model": True,
    }


def settings_table(cfg: SRPOConfig, trl: dict, *, threads: int, nproc: int) -> list[tuple[str, str, str]]:
    """(setting, ours, TRL) rows for the report; ours read from ``cfg``, TRL's from its ``GRPOConfig`` arguments."""
    algo, opt, train, rollout = cfg.algorithm, cfg.optimizer, cfg.train, cfg.rollout
    per_step = trl["per_device_train_batch_size"] * trl["gradient_accumulation_steps"]
    return [
        ("batch per step", f"{train.prompts_per_step} prompts x {train.samples_per_prompt} samples",
         f"{per_step // trl['num_generations']} prompts x num_generations={trl['num_generations']}"),
        ("optimizer updates per step", f"mini_batches_per_step={train.mini_batches_per_step}",
         f"steps_per_generation={trl['steps_per_generation']}, num_iterations={trl['num_iterations']}"),
        ("steps", str(train.steps), f"max_steps={trl['max_steps']}"),
        ("response length cap", f"max_response_length={rollout.max_response_length}",
         f"max_completion_length={trl['max_completion_length']}"),
        ("sampling", f"temperature={rollout.temperature}, top_p={rollout.top_p}",
         f"temperature={trl['temperature']}, top_p={trl['top_p']}, top_k={trl['top_k']}"),
        ("lr schedule", f"{opt.lr} {opt.lr_schedule}, warm-up {opt.lr_warmup_steps}",
         f"{trl['learning_rate']} {trl['lr_scheduler_type']}, warmup_steps={trl['warmup_steps']}"),
        ("AdamW", f"betas ({opt.adam_beta1}, {opt.adam_beta2}), eps {opt.adam_eps}, wd {opt.weight_decay}",
         f"betas ({trl['adam_beta1']}, {trl['adam_beta2']}), eps {trl['adam_epsilon']}, wd {trl['weight_decay']}"),
        ("grad clip", str(opt.clip_grad), f"max_grad_norm={trl['max_grad_norm']}"),
        ("KL", f"kl_coef={algo.kl_coef}", f"beta={trl['beta']}"),
        ("PPO clip", f"[1-{algo.clip_eps_low}, 1+{algo.clip_eps_high}]",
         f"epsilon={trl['epsilon']}, epsilon_high={trl['epsilon_high']}"),
        ("loss aggregation", algo.loss_aggregation, f"loss_type={trl['loss_type']}"),
        ("advantage", f"group (r - mean) / (std + {algo.advantage_eps})" if algo.normalize_advantage_by_std
         else "group r - mean", f"scale_rewards={trl['scale_rewards']} (std + 1e-4)"),
        ("truncated responses", f"overlong_zero_advantage={algo.overlong_zero_advantage} (advantage 0, tokens "
         "still in the token count)", f"mask_truncated_completions={trl['mask_truncated_completions']} (masked "
         "out of loss and token count)"),
        ("prompt sampling", f"sampling.strategy={cfg.sampling.strategy}", "shuffled epochs (RepeatSampler)"),
        ("reward", "srpo_mcore.rewards.RewardManager", "the same RewardManager, as a reward function"),
        ("generation", f"vLLM, rollout TP {rollout.tensor_parallel_size}", "HF generate (use_vllm=False)"),
        ("processes x threads", f"{nproc} ranks x 1 thread (TP {cfg.parallel.tensor_model_parallel_size}, "
         f"PP {cfg.parallel.pipeline_model_parallel_size})", f"1 process x {threads} threads"),
        ("seed", str(train.seed), str(trl["seed"])),
        ("dtype", cfg.model.params_dtype, "float32"),
    ]
