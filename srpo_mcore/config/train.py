"""Optimizer, training-loop, checkpoint and logging sections."""

from __future__ import annotations

from dataclasses import dataclass

from srpo_mcore.config.base import check, check_choice, check_positive, option


@dataclass
class OptimizerConfig:
    """AdamW through Megatron-Core's optimizer wrapper. Paper recipe: betas (0.9, 0.95), constant lr 1e-6.
    The schedule (``srpo_mcore/train/optim.py``, ``LRScheduler``) counts optimizer updates: ``train.steps x
    train.mini_batches_per_step`` in a run."""

    lr: float = option(1e-6, "Peak learning rate.")
    min_lr: float = option(0.0, "Where linear and cosine decay end (at the run's last update).")
    lr_schedule: str = option(
        "constant", "constant, linear or cosine decay from lr to min_lr over the updates after the warm-up.")
    lr_warmup_steps: int = option(
        0, "Optimizer updates of linear warm-up: update n < W trains at lr * (n + 1) / W (0: none).")
    adam_beta1: float = option(0.9, "AdamW beta1.")
    adam_beta2: float = option(0.95, "AdamW beta2.")
    adam_eps: float = option(1e-8, "AdamW epsilon.")
    weight_decay: float = option(0.01, "Decoupled weight decay.")
    clip_grad: float = option(1.0, "Global gradient-norm clip (0 disables).")

    def validate(self, prefix: str = "optimizer") -> None:
        check_positive(self.lr, f"{prefix}.lr")
        check_positive(self.min_lr, f"{prefix}.min_lr", allow_zero=True)
        check(self.min_lr <= self.lr, f"{prefix}.min_lr", f"{self.min_lr} exceeds lr={self.lr}")
        check_choice(self.lr_schedule, ("constant", "linear", "cosine"), f"{prefix}.lr_schedule")
        check_positive(self.lr_warmup_steps, f"{prefix}.lr_warmup_steps", allow_zero=True)
        for key in ("adam_beta1", "adam_beta2"):
            value = getattr(self, key)
            check(0.0 <= value < 1.0, f"{prefix}.{key}", f"must be in [0, 1), got {value}")
        check_positive(self.adam_eps, f"{prefix}.adam_eps")
        check_positive(self.weight_decay, f"{prefix}.weight_decay", allow_zero=True)
        check_positive(self.clip_grad, f"{prefix}.clip_grad", allow_zero=True)


@dataclass
class TrainConfig:
    """The RL loop: how many prompts and samples per step, how they are cut into updates."""

    steps: int = option(10, "Number of SRPO steps (rollout + update + weight sync).")
    prompts_per_step: int = option(8, "Prompts sampled per step (paper: 256).")
    samples_per_prompt: int = option(4, "Rollouts per prompt, the GRPO group size (paper: 32).")
    mini_batches_per_step: int = option(1, "Optimizer updates per step: the kept groups are split into this many "
                                           "mini-batches of whole groups, balanced (fewer on a short batch that kept "
                                           "fewer groups).")
    old_logprobs: str = option(
        "auto", "The PPO old log-probs: auto (a step of one update is on-policy, so its training forward gives them, "
        "detached, with no separate forward-only pass; the stale-weight guard then judges after the update) or "
        "recompute (always a separate forward-only pass before the update(s), as several mini-batches need)."
    )
    max_tokens_per_micro_batch: int = option(4096, "Token budget of one packed micro-batch per rank.")
    seed: int = option(1234, "Seed for model init, sampling order and rollouts.")
    run_dir: str = option("runs/srpo", "Where checkpoints, metrics, logs and engine files go.")
    init_checkpoint: str = option("", "HF checkpoint directory (weights, config.json, tokenizer) SRPO starts from; "
                                  "required to train")
    save_interval: int = option(0, "Checkpoint every N steps (0 = only at the end and on SIGTERM).")
    keep_last_checkpoints: int = option(2, "How many checkpoints to keep.")
    export_hf_at_end: bool = option(True, "Write an HF checkpoint of the final policy.")
    eval_interval: int = option(0, "Evaluate every N steps (0 = never).")
    eval_samples_per_prompt: int = option(4, "Samples per evaluation problem (pass@1 is averaged over them).")
    kernel_backend: str = option(
        "auto", "Log-prob / loss kernels: triton (GPU), torch (chunked reference), or auto (triton with CUDA)."
    )
    fused_lm_head: bool = option(
        True, "Compute the trainer's log-probs, entropy and loss from the final hidden states and the output "
        "weight with the fused LM-head kernel (never materialises the [tokens, vocab/TP] logits); false: "
        "Megatron's output layer, then the log-prob / loss kernels on its logits."
    )
    mismatch_alarm_action: str = option(
        "raise", "When the stale-weight alarm trips: raise (stop the run) or warn (log and continue)."
    )
    save_rollouts: bool = option(
        False, "Write each step's scored rollouts to run_dir/rollouts (rank 0; one file a step) for a later replay."
    )
    replay_dir: str = option(
        "", "Replay: take each step's scored rollouts from this directory (written with save_rollouts) instead of "
        "vLLM and the rewards; no engine, no weight sync, no evaluation (pretrain_srpo.py --replay DIR)."
    )

    def validate(self, prefix: str = "train") -> None:
        for key in ("steps", "prompts_per_step", "samples_per_prompt", "mini_batches_per_step",
                    "max_tokens_per_micro_batch", "keep_last_checkpoints"):
            check_positive(getattr(self, key), f"{prefix}.{key}")
        for key in ("save_interval", "eval_interval"):
            check_positive(getattr(self, key), f"{prefix}.{key}", allow_zero=True)
        check_positive(self.eval_samples_per_prompt, f"{prefix}.eval_samples_per_prompt")
        check_choice(self.kernel_backend, ("auto", "triton", "torch"), f"{prefix}.kernel_backend")
        check_choice(self.mismatch_alarm_action, ("raise", "warn"), f"{prefix}.mismatch_alarm_action")
        check_choice(self.old_logprobs, ("auto", "recompute"), f"{prefix}.old_logprobs")
        check(self.samples_per_prompt >= 2, f"{prefix}.samples_per_prompt",
              "GRPO needs at least 2 samples per prompt to form a group baseline")
        check(not (self.save_rollouts and self.replay_dir), f"{prefix}.save_rollouts",
              "a replay (train.replay_dir) generates nothing to save; set train.save_rollouts=false")
        check(self.prompts_per_step % self.mini_batches_per_step == 0, f"{prefix}.mini_batches_per_step",
              f"prompts_per_step={self.prompts_per_step} is not divisible by {self.mini_batches_per_step}")


@dataclass
class LoggingConfig:
    tensorboard: bool = option(True, "Write TensorBoard events under run_dir/tensorboard.")
    jsonl: bool = option(True, "Append one JSON line of metrics per step to run_dir/metrics.jsonl.")
    progress_bar: bool = option(True, "Show a progress bar on rank 0's console when it is a terminal (with a "
                                      "redirected console: the plain summary lines of summary_interval instead).")
    summary_interval: int = option(10, "Without a progress bar: one plain line (step, reward, accuracy, length, "
                                       "seconds per step) on the console every this many steps; 0: none.")
    log_level: str = option("INFO", "Python logging level.")

    def validate(self, prefix: str = "logging") -> None:
        check_choice(self.log_level, ("DEBUG", "INFO", "WARNING", "ERROR"), f"{prefix}.log_level")
        check(self.summary_interval >= 0, f"{prefix}.summary_interval", f"must be >= 0, got {self.summary_interval}")
