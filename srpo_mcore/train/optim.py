"""Megatron DDP wrapping and the AdamW optimizer, from the typed config."""

from __future__ import annotations

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
