"""SRPO training entry point. It starts its own ranks with torchrun unless started under torchrun:

    python pretrain_srpo.py --config configs/quickstart.yaml [--nproc 2] [key.sub=value ...]
    torchrun --nproc_per_node=2 pretrain_srpo.py --config configs/quickstart.yaml [key.sub=value ...]
    python pretrain_srpo.py --config configs/X.yaml --print-config
    python pretrain_srpo.py --config configs/X.yaml --dry-run --nodes 4 --gpus-per-node 8
    torchrun --nproc_per_node=2 pretrain_srpo.py --config configs/quickstart.yaml --replay runs/quickstart

Parse, check, set the process environment, run: everything else lives in srpo_mcore/. The config, the input files
and every data row are checked here, before any rank builds anything; a problem is one ``error: ...`` line and
exit code 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML config (see configs/)")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. train.steps=3")
    ap.add_argument("--nproc", type=int, help="ranks to start when not under torchrun (default: the smallest "
                    "world that holds TP x PP and the rollout TP)")
    ap.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    ap.add_argument("--dry-run", action="store_true",
                    help="validate against --nodes x --gpus-per-node and print a per-GPU memory plan; no GPU used")
    ap.add_argument("--nodes", type=int, default=1, help="with --dry-run: number of nodes")
    ap.add_argument("--gpus-per-node", type=int, default=8, help="with --dry-run: GPUs per node")
    ap.add_argument("--replay", metavar="DIR",
                    help="train from the rollouts a run saved with train.save_rollouts=true (DIR: its run directory "
                    "or its rollouts/); no vLLM, no rewards; same as train.replay_dir=DIR")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from srpo_mcore.platform import configure_process_environment

    configure_process_environment()
    import srpo_mcore.data  # noqa: F401  (registers the data section's name checks: file types, formats, templates)
    from srpo_mcore.config import ConfigError, load_config, to_yaml, validate_world_size

    try:
        overrides = [*args.overrides, *([f"train.replay_dir={args.replay}"] if args.replay else [])]
        cfg = load_config(args.config, overrides)
    except ConfigError as e:
        print(f"error: {args.config}: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    if args.dry_run:
        from srpo_mcore.planning.report import run_dry_run

        return run_dry_run(cfg, nodes=args.nodes, gpus_per_node=args.gpus_per_node)
    under_torchrun = "WORLD_SIZE" in os.environ
    nproc = int(os.environ["WORLD_SIZE"]) if under_torchrun else args.nproc or default_world_size(cfg)
    from srpo_mcore.tasks.inputs import training_data_problems, training_input_problems

    try:
        validate_world_size(cfg, nproc)
    except ConfigError as e:
        problems = [f"{e} ({nproc} ranks)"]
    else:  # before any rank builds anything; rank 0 speaks for all
        problems = training_input_problems(cfg) or training_data_problems(cfg)
    if problems:
        if os.environ.get("RANK", "0") == "0":
            print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 2
    if not under_torchrun:
        from srpo_mcore.distributed import relaunch_under_torchrun

        return relaunch_under_torchrun(__file__, argv, nproc)
    from srpo_mcore.rollout.env import configure_vllm_environment
    from srpo_mcore.train.trainer import run_training

    if not cfg.train.replay_dir:  # a replay starts no engine
        configure_vllm_environment(cfg.train.run_dir)
    return run_training(cfg)


def default_world_size(cfg) -> int:
    return math.lcm(cfg.parallel.tensor_model_parallel_size * cfg.parallel.pipeline_model_parallel_size,
                    cfg.rollout.tensor_parallel_size)


if __name__ == "__main__":
    sys.exit(main())
