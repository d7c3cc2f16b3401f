"""Rollout engine (vLLM) and weight-sync section."""

from __future__ import annotations

from dataclasses import dataclass

from srpo_mcore.config.base import check, check_choice, check_positive, option
from srpo_mcore.config.model import DTYPES


@dataclass
class RolloutConfig:
    """vLLM runs inside the torchrun job (external launcher); every rank hosts one worker."""

    tensor_parallel_size: int = option(1, "Rollout TP, independent of the trainer's TP and PP.")
    max_prompt_length: int = option(512, "Prompts longer than this (tokens) are rejected at load time.")
    max_response_length: int = option(256, "Generation cap; responses cut here get zero advantage.")
    temperature: float = option(1.0, "Sampling temperature (log-probs are reported after it).")
    top_p: float = option(1.0, "Nucleus sampling (1.0 keeps the exact on-policy distribution).")
    dtype: str = option("auto", "Engine dtype: auto (the trainer's params dtype), float32, bfloat16 or float16.")
    gpu_memory_utilization: float = option(0.5, "GPU: fraction of memory vLLM may take.")
    cpu_kv_cache_gib: float = option(
        1.0, "CPU build: KV-cache size in GiB per rank (passed as vLLM's kv_cache_memory_bytes, the modern form of "
        "VLLM_CPU_KVCACHE_SPACE)."
    )
    enforce_eager: bool = option(True, "Skip CUDA graphs / torch.compile (fast start; CPU needs it).")
    enable_sleep_mode: bool = option(True, "GPU: sleep/wake vLLM around training to hand memory back.")
    sleep_level: int = option(
        2, "GPU sleep level: 2 discards the weights while asleep (every wake is followed by a full weight sync, "
        "the normal RL loop), 1 keeps a CPU copy of them (costs host memory and a copy each way)."
    )
    sync_bucket_mb: int = option(256, "Weight-sync bucket size in MiB.")
    sync_timeout_s: float = option(300.0, "A weight sync that takes longer fails with a clear error.")
    sync_transport: str = option(
        "auto", "How bucket bytes reach every rank: 'shm' (one node, CPU: the owning ranks write HF tensors into a "
        "node-shared buffer), 'collective' (TP all-gather + PP broadcast; GPU/NCCL or several nodes), 'auto'."
    )
    mismatch_alarm_ratio: float = option(
        5.0, "Stale-weight alarm: trip when the mean rollout/trainer log-prob mismatch exceeds this factor times "
        "max(running baseline, mismatch_alarm_floor)."
    )
    mismatch_alarm_floor: float = option(
        1e-3, "Stale-weight alarm: the smallest baseline the ratio applies to, so the alarm is never below "
        "ratio x floor nats (5e-3 by default). Measured mean |log-prob delta| after a sync on the CPU quickstart "
        "model: fp32 3-4e-7, bf16 params and engine 0.85-2.4e-3; one skipped sync in bf16 (lr 1e-4) 1.5e-2 "
        "(docs/benchmarks.md). The defaults fit both dtypes: with larger bf16 noise (other kernels on GPU) the "
        "baseline, not the floor, sets the alarm level."
    )

    def validate(self, prefix: str = "rollout") -> None:
        for key in ("tensor_parallel_size", "max_prompt_length", "max_response_length", "sync_bucket_mb",
                    "sync_timeout_s", "cpu_kv_cache_gib", "mismatch_alarm_ratio"):
            check_positive(getattr(self, key), f"{prefix}.{key}")
        check_positive(self.temperature, f"{prefix}.temperature")
        check(0.0 < self.top_p <= 1.0, f"{prefix}.top_p", f"must be in (0, 1], got {self.top_p}")
        check(0.0 < self.gpu_memory_utilization < 1.0, f"{prefix}.gpu_memory_utilization",
              f"must be in (0, 1), got {self.gpu_memory_utilization}")
        check_choice(self.dtype, ("auto", *DTYPES), f"{prefix}.dtype")
        check_choice(self.sleep_level, (1, 2), f"{prefix}.sleep_level")
        check_choice(self.sync_transport, ("auto", "shm", "collective"), f"{prefix}.sync_transport")
        check_positive(self.mismatch_alarm_floor, f"{prefix}.mismatch_alarm_floor", allow_zero=True)
        check(self.mismatch_alarm_ratio > 1.0, f"{prefix}.mismatch_alarm_ratio",
              f"must be > 1 (a factor over the running baseline), got {self.mismatch_alarm_ratio}")
