"""The dry-run report: the memory plan (memory.py) as a table or JSON, and the dry run's exit code."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from srpo_mcore.config import ConfigError, SRPOConfig
from srpo_mcore.planning.memory import (
    EXIT_DOES_NOT_FIT,
    EXIT_INVALID_LAYOUT,
    EXIT_OK,
    ROW_ORDER,
    MemoryPlan,
    PlannerOptions,
    _gib,
    plan_memory,
)


def format_plan(plan: MemoryPlan, cfg: SRPOConfig) -> str:
    par, tr, ro, opt, ws = cfg.parallel, cfg.train, cfg.rollout, plan.options, plan.worst_stage
    recompute = par.recompute_granularity + (f" ({par.recompute_num_layers} layer/chunk)"
                                             if par.recompute_granularity == "full" else "")
    lines = [
        f"SRPO dry run: {plan.model} ({plan.total_params / 1e9:.2f} B parameters) on {plan.nodes} node(s) x "
        f"{plan.gpus_per_node} GPUs = {plan.world_size} ranks, {_gib(plan.gpu_memory_bytes)} GiB per GPU",
        f"trainer: TP={plan.tp} PP={plan.pp} DP={plan.dp}; sequence parallel {_on(par.sequence_parallel)}, "
        f"distributed optimizer {_on(par.use_distributed_optimizer)}, recompute {recompute}, "
        f"{cfg.model.params_dtype} params",
        f"  {ws.params / 1e9:.2f} B parameters per GPU (stage {ws.stage}, the highest peak); micro-batch "
        f"{tr.max_tokens_per_micro_batch} tokens, {plan.micro_batches_per_update} micro-batches per update at full "
        f"length, {ws.inflight} in flight",
        f"rollout: vLLM TP={plan.rollout_tp} x {plan.rollout_dp} engines; {tr.prompts_per_step} prompts x "
        f"{tr.samples_per_prompt} samples, {plan.sequence_tokens} tokens max each ({ro.max_prompt_length} prompt + "
        f"{ro.max_response_length} response); gpu_memory_utilization {ro.gpu_memory_utilization}",
        "",
        f"{'per GPU [GiB]' + (f', PP stage {ws.stage} (0-based)' if plan.pp > 1 else ''):<36}{'train':>9}{'sync':>9}"
        f"{'rollout':>9}",
    ]
    for row in ROW_ORDER:
        cells = [plan.phases[p].get(row) for p in plan.phases]
        if not any(cells):
            continue
        label = {"LM head + loss": "LM head + loss (" + ("fused" if cfg.train.fused_lm_head else "logits") + ")",
                 "optimizer state": "optimizer state" + (f" (/DP={plan.dp})" if par.use_distributed_optimizer else
                                                         "")}.get(row, row)
        lines.append(f"  {label:<34}" + "".join(f"{_gib(c) if c else '-':>9}" for c in cells))
    lines.append(f"  {'total':<34}" + "".join(f"{_gib(plan.phase_total(p)):>9}" for p in plan.phases))
    lines.append(f"  {'free':<34}" + "".join(f"{_gib(plan.gpu_memory_bytes - plan.phase_total(p)):>9}"
                                            for p in plan.phases))
    last, fused = plan.last_stage, cfg.train.fused_lm_head
    counted, other = (last.lm_head_fused, last.lm_head_logits_path) if fused else (last.lm_head_logits_path,
                                                                                   last.lm_head_fused)
    lines.append(f"  LM head + loss on the last stage: {_gib(counted)} GiB counted (train.fused_lm_head: "
                 f"{str(fused).lower()}); the {'logits path' if fused else 'fused LM head'} would need "
                 f"{_gib(other)} GiB")
    if plan.pp > 1:
        lines.append("  train phase by stage: " + ", ".join(
            f"stage {s}: {_gib(b)} GiB" for s, b in plan.stage_train_bytes.items()))
    lines += [
        "",
        f"KV cache: {plan.kv_bytes_per_token / 1024:.1f} KiB per token per GPU; {_gib(max(0, plan.kv_bytes_available))} "
        f"GiB holds {plan.concurrent_sequences} full-length sequences at once; the step needs "
        f"{plan.sequences_per_engine} per engine ({_gib(plan.kv_bytes_needed)} GiB at full length, "
        f"{plan.waves} wave(s))",
        f"assumed: vLLM {f'sleeps (level {ro.sleep_level})' if ro.enable_sleep_mode else 'never sleeps'} during "
        f"training; trainer weights, grads and optimizer state resident throughout; runtime overhead "
        f"{_gib(opt.runtime_overhead_bytes)} GiB per GPU",
    ]
    if ro.enable_sleep_mode and ro.sleep_level == 1:
        host = plan.phases["rollout"]["vLLM weights"] * plan.gpus_per_node
        lines.append(f"sleep level 1 parks vLLM's weights in host memory: {_gib(host)} GiB per node")
    lines += [f"warning: {w}" for w in plan.warnings]
    if plan.fits:
        lines.append(f"OK: peak {_gib(plan.peak_bytes)} of {_gib(plan.gpu_memory_bytes)} GiB per GPU "
                     f"({plan.peak_phase} phase)")
    else:
        lines += [f"DOES NOT FIT: {p}" for p in plan.problems]
    return "\n".join(lines)


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def run_dry_run(cfg: SRPOConfig, nodes: int, gpus_per_node: int, *, options: PlannerOptions | None = None,
                as_json: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print the plan (table or JSON); return 0 (fits), 1 (does not fit) or 2 (invalid layout)."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        plan = plan_memory(cfg, nodes, gpus_per_node, options)
    except ConfigError as e:
        print(f"error: invalid layout for {nodes} node(s) x {gpus_per_node} GPUs: {e}", file=err)
        return EXIT_INVALID_LAYOUT
    if as_json:
        print(json.dumps(plan.to_dict(), indent=2), file=out)
    else:
        print(format_plan(plan, cfg), file=out)
    if not plan.fits:
        for problem in plan.problems:
            print(f"error: does not fit: {problem}", file=err)
        return EXIT_DOES_NOT_FIT
    return EXIT_OK
