"""``python -m srpo_mcore.planning --config ... --nodes N --gpus-per-node G``: the dry-run memory planner with
its options (GPU memory, JSON; the LM-head path follows train.fused_lm_head); ``pretrain_srpo.py --dry-run`` runs it
with the defaults. See memory.py for what it counts."""

from __future__ import annotations

import argparse
import sys

from srpo_mcore.config import ConfigError
from srpo_mcore.planning.memory import EXIT_INVALID_LAYOUT, GIB, H100_80GB_BYTES, PlannerOptions
from srpo_mcore.planning.report import run_dry_run


def main(argv: list[str] | None = None) -> int:
    from srpo_mcore.config import load_config

    ap = argparse.ArgumentParser(prog="python -m srpo_mcore.planning",
                                 description="SRPO dry-run memory planner (see srpo_mcore/planning/memory.py).")
    ap.add_argument("--config", required=True)
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. rollout.gpu_memory_utilization=0.4")
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--gpu-memory-gib", type=float, default=H100_80GB_BYTES / GIB)
    ap.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {args.config}: {e}", file=sys.stderr)
        return EXIT_INVALID_LAYOUT
    options = PlannerOptions(gpu_memory_bytes=int(args.gpu_memory_gib * GIB))
    return run_dry_run(cfg, args.nodes, args.gpus_per_node, options=options, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
