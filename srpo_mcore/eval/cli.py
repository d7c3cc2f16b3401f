"""Evaluate a checkpoint: pass@1 (averaged over k samples) on named benchmarks or any data file, through vLLM
and the rule rewards (math-verify, the code sandbox) - the trainer's own rollout and reward path.

    python -m srpo_mcore.eval --hf DIR --benchmark aime24 livecodebench --out runs/eval \\
        --tp 8 --rollout-tp 8 --dtype bfloat16 --max-tokens 16384 --temperature 0.6 --top-p 0.95
    python -m srpo_mcore.eval --mcore runs/quickstart --data runs/quickstart/data/heldout.jsonl --k 4 \\
        --out runs/quickstart/eval --set rollout.cpu_kv_cache_gib=0.25

Checkpoints: ``--hf DIR`` (its tokenizer by default), or ``--mcore DIR``: a converted Megatron checkpoint (give
``--tokenizer``), a trainer checkpoint ``run_dir/checkpoints/step_N``, or a run directory (its latest
checkpoint; architecture, settings and tokenizer come from the run's config.yaml).

Settings: a flag wins, then ``--set key=value``, then ``--config FILE`` (default: the run's config.yaml for a
trainer checkpoint, the ``srpo_run_config.yaml`` the trainer writes into its HF export ``run_dir/hf_final``),
then the built-in defaults (documented in srpo_mcore/config/);
templates, reward options and vLLM memory come from the config. It starts its own ranks with torchrun (``--nproc``,
default lcm(TP x PP, rollout TP)) unless launched under torchrun. Prints a table; writes ``--out``/summary.json
and samples.jsonl (see srpo_mcore/eval/report.py), and each rank's log to ``--out``/logs/rankNNNNN.log (third-party
notices go there only). Bad input fails before any rank starts. Crash test: ``--set debug.kill_rank0_after_benchmark=N``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from srpo_mcore.config.model import DTYPES
from srpo_mcore.eval.benchmarks import BENCHMARKS

# flag -> config key it sets
FLAGS = {"temperature": "rollout.temperature", "top_p": "rollout.top_p", "max_tokens": "rollout.max_response_length",
         "max_prompt_length": "rollout.max_prompt_length", "rollout_tp": "rollout.tensor_parallel_size",
         "tp": "parallel.tensor_model_parallel_size", "pp": "parallel.pipeline_model_parallel_size"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m srpo_mcore.eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--hf", metavar="DIR", help="HF Qwen2/Qwen2.5 checkpoint")
    source.add_argument("--mcore", metavar="DIR", help="Megatron checkpoint, trainer checkpoint or run directory")
    ap.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default: the checkpoint's)")
    ap.add_argument("--benchmark", nargs="+", default=[], metavar="NAME", help=f"one of {', '.join(BENCHMARKS)}")
    ap.add_argument("--data", nargs="+", default=[], metavar="FILE", help="any loadable data file(s)")
    ap.add_argument("--data-dir", type=Path, help="the named benchmarks' files (default: shared/data beside the "
                    "checkout)")
    ap.add_argument("--k", type=int, help="samples per problem (default: 32 for AIME and LiveCodeBench, else 1)")
    ap.add_argument("--since", metavar="YYYY-MM-DD", help="LiveCodeBench (dated records): only problems released "
                    "on or after this date")
    ap.add_argument("--until", metavar="YYYY-MM-DD", help="... and on or before this date")
    ap.add_argument("--limit", type=int, metavar="N", help="only the first N problems of each benchmark")
    ap.add_argument("--temperature", type=float)
    ap.add_argument("--top-p", type=float)
    ap.add_argument("--max-tokens", type=int, help="response length cap")
    ap.add_argument("--max-prompt-length", type=int, help="longer prompts are dropped (and counted)")
    ap.add_argument("--tp", type=int, help="tensor parallel size of the Megatron model the weights load into")
    ap.add_argument("--pp", type=int, help="pipeline parallel size of that model")
    ap.add_argument("--rollout-tp", type=int, help="vLLM tensor parallel size (world / rollout TP engines)")
    ap.add_argument("--nproc", type=int, help="ranks to start when not under torchrun")
    ap.add_argument("--dtype", choices=DTYPES, help="model dtype (default: the checkpoint's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", help="YAML config (templates, rewards, vLLM memory, ...); default: the run's config "
                    "for a trainer checkpoint or a trainer's HF export")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument("--out", required=True, help="output directory (summary.json, samples.jsonl)")
    return ap.parse_args(argv)


def build_plan(args: argparse.Namespace, argv: list[str]):
    """Resolve and check everything cheap: checkpoint, tokenizer, settings, benchmark files and rows."""
    from srpo_mcore.config import ConfigError, load_config
    from srpo_mcore.eval.benchmarks import resolve
    from srpo_mcore.eval.checkpoint import resolve_hf, resolve_mcore
    from srpo_mcore.eval.runner import EvalPlan

    benchmarks = resolve(args.benchmark, args.data, data_dir=args.data_dir, k=args.k, limit=args.limit,
                         since=args.since, until=args.until)
    ckpt = resolve_hf(args.hf, args.dtype) if args.hf else resolve_mcore(args.mcore, args.dtype)
    try:
        config_file = args.config or ckpt.run_config
        cfg = load_config(config_file, args.set, validate=False)  # validated with the model
        cfg.model = ckpt.model
        for flag, key in FLAGS.items():
            if getattr(args, flag) is not None:
                section, field = key.split(".")
                setattr(getattr(cfg, section), field, getattr(args, flag))
        total = cfg.rollout.max_prompt_length + cfg.rollout.max_response_length
        cfg.train.max_tokens_per_micro_batch = max(cfg.train.max_tokens_per_micro_batch, total)  # trains nothing
        cfg.validate()
    except ConfigError as e:
        culprit = next((f for f, key in FLAGS.items() if key == e.key and getattr(args, f) is not None), None)
        raise ValueError(f"{e}" + (f" (set by --{culprit.replace('_', '-')})" if culprit else "")) from None
    tokenizer = args.tokenizer or ckpt.tokenizer
    if tokenizer is None:
        raise ValueError(f"--mcore {args.mcore}: a Megatron checkpoint holds no tokenizer; pass --tokenizer DIR")
    from srpo_mcore.tasks.inputs import TOKENIZER_FILES

    if not any((Path(tokenizer) / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(f"{tokenizer}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); pass --tokenizer DIR")
    for bench in benchmarks:
        if not bench.load_records(cfg.data.file_format, cfg.data.on_invalid_row):
            raise ValueError(f"benchmark {bench.name}: no records in {', '.join(map(str, bench.files))}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    plan = EvalPlan(cfg, ckpt, str(tokenizer), benchmarks, args.out, args.seed, argv,
                    str(config_file) if config_file else None)
    return plan, world_size(args, cfg)


def world_size(args: argparse.Namespace, cfg) -> int:
    model_parallel = cfg.parallel.tensor_model_parallel_size * cfg.parallel.pipeline_model_parallel_size
    rollout_tp = cfg.rollout.tensor_parallel_size
    n = int(os.environ.get("WORLD_SIZE", 0)) or args.nproc or math.lcm(model_parallel, rollout_tp)
    if n % model_parallel or n % rollout_tp:
        raise ValueError(f"{n} ranks cannot hold TP x PP = {model_parallel} and rollout TP = {rollout_tp}: the "
                         "world size must be a multiple of both")
    return n


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from srpo_mcore.platform import configure_process_environment

    configure_process_environment()
    try:
        plan, nproc = build_plan(args, argv)
    except (ValueError, OSError) as e:  # ConfigError, DataError, CheckpointError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    if "WORLD_SIZE" not in os.environ:
        from srpo_mcore.distributed import relaunch_under_torchrun

        return relaunch_under_torchrun("srpo_mcore.eval", argv, nproc)
    from srpo_mcore.eval.runner import run
    from srpo_mcore.rollout.env import configure_vllm_environment

    configure_vllm_environment(plan.out)
    return run(plan)
