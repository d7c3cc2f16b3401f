"""Megatron DDP wrapping, the AdamW optimizer and its learning-rate schedule, from the typed config."""

from __future__ import annotations

import math

import torch

from srpo_mcore.config.model import ParallelConfig
from srpo_mcore.config.train import OptimizerConfig


def wrap_ddp(model_chunk: torch.nn.Module, parallel: ParallelConfig):
    """Megatron's DDP (contiguous grad buffers, fp32 grad reduction) around one model chunk."""
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig

    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True,
        overlap_grad_reduce=False,
        use_distributed_optimizer=parallel.use_distributed_optimizer,
    )
    ddp = DistributedDataParallel(config=model_chunk.config, ddp_config=ddp_config, module=model_chunk)
    return ddp


def build_optimizer(ddp_model, optim: OptimizerConfig, parallel: ParallelConfig, params_dtype: torch.dtype):
    """AdamW through Megatron's optimizer (mixed precision and the distributed optimizer handled there)."""
    from megatron.core.distributed import finalize_model_grads
    from megatron.core.optimizer import OptimizerConfig as MegatronOptimizerConfig
    from megatron.core.optimizer import get_megatron_optimizer

    config = MegatronOptimizerConfig(
        optimizer="adam",
        lr=optim.lr,
        min_lr=optim.min_lr,
        weight_decay=optim.weight_decay,
        adam_beta1=optim.adam_beta1,
        adam_beta2=optim.adam_beta2,
        adam_eps=optim.adam_eps,
        clip_grad=optim.clip_grad,
        bf16=params_dtype == torch.bfloat16,
        fp16=params_dtype == torch.float16,
        params_dtype=params_dtype,
        use_distributed_optimizer=parallel.use_distributed_optimizer,
    )
    optimizer = get_megatron_optimizer(config, [ddp_model])
    model_config = ddp_model.config
    model_config.no_sync_func = ddp_model.no_sync
    model_config.finalize_model_grads_func = finalize_model_grads
    model_config.grad_scale_func = optimizer.scale_loss
    return optimizer


class LRScheduler:
    """The learning rate of every optimizer update, from ``optimizer.lr_schedule`` / ``lr_warmup_steps``.

    Update ``n`` (0-based, counted over the whole run) trains at::

        n <  W:  lr * (n + 1) / W                                  (linear warm-up; the first update is not at 0)
        n >= W:  p = min(1, (n - W) / max(1, T - W))
                 constant: lr
                 linear:   min_lr + (lr - min_lr) * (1 - p)
                 cosine:   min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2

    with ``W = lr_warmup_steps`` and ``T = train.steps * train.mini_batches_per_step`` (the run's optimizer
    updates). :meth:`step` is called once after every optimizer update and sets the rate of the next one in every
    param group; the state (updates done) is one int, saved in the trainer state, so a resumed run continues
    the sequence exactly.
    """

    def __init__(self, optimizer, optim: OptimizerConfig, total_updates: int):
        if total_updates < 1:
            raise ValueError(f"total_updates must be >= 1, got {total_updates}")
        self.optimizer = optimizer
        self.config = optim
        self.total_updates = total_updates
        self.updates_done = 0
        self._apply()

    def lr_at(self, update: int) -> float:
        """The rate of update ``update`` (0-based)."""
        c, warmup = self.config, self.config.lr_warmup_steps
        if update < warmup:
            return c.lr * (update + 1) / warmup
        progress = min(1.0, (update - warmup) / max(1, self.total_updates - warmup))
        if c.lr_schedule == "constant":
            return c.lr
        if c.lr_schedule == "linear":
            return c.min_lr + (c.lr - c.min_lr) * (1.0 - progress)
        if c.lr_schedule == "cosine":
            return c.min_lr + (c.lr - c.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        raise ValueError(f"optimizer.lr_schedule={c.lr_schedule!r} is not one of constant, linear, cosine")

    def step(self) -> None:
        """One optimizer update is done: set the rate of the next."""
        self.updates_done += 1
        self._apply()

    def _apply(self) -> None:
        lr = self.lr_at(self.updates_done)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict:
        return {"updates_done": self.updates_done, "schedule": self.config.lr_schedule,
                "warmup": self.config.lr_warmup_steps, "total_updates": self.total_updates}

    def load_state_dict(self, state: dict) -> None:
        saved: tuple = (state["schedule"], state["warmup"], state["total_updates"])
        mine: tuple = (self.config.lr_schedule, self.config.lr_warmup_steps, self.total_updates)
        if self.config.lr_schedule == "constant":  # the run's length does not enter a constant schedule
            saved, mine = saved[:2], mine[:2]
        if saved != mine:
            raise ValueError(
                f"the checkpoint's LR schedule (lr_schedule, lr_warmup_steps, updates in the run) = {saved}, this "
                f"run's = {mine}: resume with the same optimizer.lr_schedule, optimizer.lr_warmup_steps, "
                "train.steps and train.mini_batches_per_step")
        self.updates_done = int(state["updates_done"])
        self._apply()
