"""The evaluation job, on every rank of the torchrun job (SPMD, like the trainer):

    checkpoint --load--> Megatron model (trainer TP/PP) --weight sync--> vLLM engine(s); model freed
    per benchmark: prompts --evaluate_pass_at_1 (generate k, score)--> metrics + scored samples
    rank 0: summary.json, samples.jsonl, the table

The engine set-up is the trainer's (``RolloutEngine`` starts with dummy weights, ``WeightSync`` loads them), so
what is evaluated is exactly what the trainer's rollouts would generate from this checkpoint.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from srpo_mcore import platform
from srpo_mcore.config import SRPOConfig
from srpo_mcore.eval.benchmarks import Benchmark
from srpo_mcore.eval.checkpoint import PolicyCheckpoint, load_weights
from srpo_mcore.job import Job, inject_fault, job

logger = logging.getLogger("srpo_mcore.eval")


@dataclass
class EvalPlan:
    """Everything the ranks need, built and checked before they start (see ``cli.py``)."""

    cfg: SRPOConfig
    checkpoint: PolicyCheckpoint
    tokenizer: str
    benchmarks: list[Benchmark]
    out: str
    seed: int
    command: list[str]  # the arguments, recorded in summary.json
    config_file: str | None = None  # the YAML the settings came from (--config, or the checkpoint's run config)


def start_engine(cfg: SRPOConfig, j: Job, checkpoint: PolicyCheckpoint, seed: int):
    """The job's rollout engine holding the checkpoint's weights: build this rank's Megatron shard, load it, sync it
    into vLLM, free it."""
    from srpo_mcore.model.qwen2 import build_model
    from srpo_mcore.rollout.engine import resolve_rollout_dtype
    from srpo_mcore.rollout.weight_sync import WeightSync

    state = j.state
    chunk = build_model(cfg.model, cfg.parallel, pre_process=state.is_first_stage, post_process=state.is_last_stage)
    load_weights(checkpoint, chunk, state)
    engine = j.start_engine(cfg, seed=seed)
    weight_sync = WeightSync(chunk, cfg.model, state, cfg.rollout, dtype=resolve_rollout_dtype(cfg.rollout, cfg.model))
    stats = weight_sync.sync(engine)
    weight_sync.close()
    logger.info("loaded %s (%s) into the engine: %.1f MB in %.1f s", checkpoint.path, checkpoint.kind,
                stats.bytes / 1e6, stats.seconds)
    del chunk, weight_sync
    gc.collect()
    platform.release_cached_device_memory()
    return engine


def run(plan: EvalPlan) -> int:
    """The evaluation on this rank; the process environment was set by the entry point (cli.py), the job's logging
    (``--out``/logs), process groups and shutdown order are ``srpo_mcore.job``'s."""
    from transformers import AutoTokenizer

    from srpo_mcore.eval import report
    from srpo_mcore.rewards import RewardManager
    from srpo_mcore.tasks.pass_at_k import evaluate_pass_at_1

    cfg = plan.cfg
    with job(cfg, log_dir=Path(plan.out) / "logs", seed=plan.seed) as j:
        state = j.state
        tokenizer = AutoTokenizer.from_pretrained(plan.tokenizer)
        tables = [b.prompts(cfg, tokenizer) for b in plan.benchmarks]
        for bench, table in zip(plan.benchmarks, tables):
            dropped = sum(table.dropped_too_long.values())
            if dropped and state.rank == 0:
                logger.warning("%s: %d prompt(s) longer than %d tokens are not evaluated (raise --max-prompt-length)",
                               bench.name, dropped, cfg.rollout.max_prompt_length)
        domains = sorted({p.domain for t in tables for p in t.prompts})
        engine = start_engine(cfg, j, plan.checkpoint, plan.seed)
        rewards = RewardManager(cfg.rewards, domains=domains)
        j.on_close(rewards.close)
        results = []
        for index, (bench, prompts) in enumerate(zip(plan.benchmarks, tables)):
            logger.info("%s (%d/%d): %d problems x %d samples, up to %d tokens each", bench.name, index + 1,
                        len(plan.benchmarks), len(prompts.prompts), bench.k, cfg.rollout.max_response_length)
            start = time.perf_counter()
            metrics, groups = evaluate_pass_at_1(engine, prompts, tokenizer, rewards, cfg.rollout, k=bench.k,
                                                 seed=plan.seed, prefix="", return_samples=True)
            results.append(report.BenchmarkResult(bench, prompts, metrics, groups, time.perf_counter() - start))
            logger.info("%s: pass@1 %.4f over %d problems x %d samples", bench.name, metrics["accuracy"],
                        len(groups), bench.k)
            if state.rank == 0:  # after every benchmark: a crash later keeps what is done (summary "pending")
                report.write(plan, results, world_size=state.world_size,
                             pending=[b.name for b in plan.benchmarks[index + 1:]])
            inject_fault(cfg.debug.kill_rank0_after_benchmark == index, f"after benchmark {index}")  # crash test
        if state.rank == 0:
            print(report.table(results), flush=True)
    return 0
