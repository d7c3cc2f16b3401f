"""SRPO training entry point. Start it with torchrun:

    torchrun --nproc_per_node=2 pretrain_srpo.py --config configs/quickstart.yaml [key.sub=value ...]
    python pretrain_srpo.py --config configs/X.yaml --print-config
    python pretrain_srpo.py --config configs/X.yaml --dry-run --nodes 4 --gpus-per-node 8
    torchrun --nproc_per_node=2 pretrain_srpo.py --config configs/quickstart.yaml --replay runs/quickstart

Parse, build, run, close: everything else lives in srpo_mcore/.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML config (see configs/)")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. train.steps=3")
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
    args = parse_args(argv)
    from srpo_mcore.platform import configure_process_environment

    configure_process_environment()
    from srpo_mcore.config import ConfigError, load_config, to_yaml

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
        from srpo_mcore.train.planner import run_dry_run

        return run_dry_run(cfg, nodes=args.nodes, gpus_per_node=args.gpus_per_node)
    from srpo_mcore.train.inputs import training_input_problems

    if problems := training_input_problems(cfg):  # before any rank builds anything; rank 0 speaks for all
        if os.environ.get("RANK", "0") == "0":
            print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 2
    from srpo_mcore.train.trainer import run_training

    return run_training(cfg)


if __name__ == "__main__":
    sys.exit(main())
