"""HF <-> Megatron checkpoint conversion for Qwen2/Qwen2.5.

    python -m srpo_mcore.convert hf-to-mcore --hf DIR --out DIR [--tp T --pp P]
    python -m srpo_mcore.convert mcore-to-hf --mcore DIR --out DIR [--tp T --pp P] [--dtype bfloat16]

Megatron checkpoints use the distributed (torch_dist) format, so one saved at any TP/PP loads at any other;
``--tp/--pp`` choose how many ranks share the work (the command starts them with torchrun itself when it is
not already running under torchrun). Tensors are streamed one at a time: no rank holds more than its shards
plus one full layer.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m srpo_mcore.convert", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    a = sub.add_parser("hf-to-mcore", help="HF safetensors checkpoint -> Megatron distributed checkpoint")
    a.add_argument("--hf", required=True, help="HF checkpoint directory (config.json + safetensors)")
    b = sub.add_parser("mcore-to-hf", help="Megatron distributed checkpoint -> HF safetensors checkpoint")
    b.add_argument("--mcore", required=True, help="Megatron checkpoint directory written by this project")
    b.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    for p in (a, b):
        p.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
        p.add_argument("--tp", type=int, default=1, help="tensor parallel ranks to convert with")
        p.add_argument("--pp", type=int, default=1, help="pipeline parallel ranks to convert with")
    return ap.parse_args(argv)


def _check_inputs(args: argparse.Namespace):
    """Validate everything cheap before starting ranks; return the ModelConfig."""
    from srpo_mcore.config import validate_model_parallel
    from srpo_mcore.config.base import ConfigError
    from srpo_mcore.config.model import ParallelConfig
    from srpo_mcore.model.hf_checkpoint import HFCheckpointReader, model_config_from_hf
    from srpo_mcore.model.mcore_checkpoint import read_model_config

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"error: --out {out} exists and is not empty; refusing to overwrite")
    if args.command == "hf-to-mcore":
        model = model_config_from_hf(args.hf)
        HFCheckpointReader(args.hf, model).check_complete()
    else:
        model = read_model_config(args.mcore)
    try:
        ParallelConfig(tensor_model_parallel_size=args.tp, pipeline_model_parallel_size=args.pp).validate()
        validate_model_parallel(model, args.tp, args.pp, "parallel")
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    return model


def _run(args: argparse.Namespace, model) -> None:
    import torch.distributed as dist

    from srpo_mcore.config.model import ParallelConfig
    from srpo_mcore.distributed import destroy_model_parallel, init_model_parallel
    from srpo_mcore.model.hf_checkpoint import load_hf_into_model, save_hf_checkpoint
    from srpo_mcore.model.mcore_checkpoint import load_model_checkpoint, save_model_checkpoint
    from srpo_mcore.model.qwen2 import build_model

    state = init_model_parallel(args.tp, args.pp, seed=0)
    parallel = ParallelConfig(tensor_model_parallel_size=args.tp, pipeline_model_parallel_size=args.pp)
    chunk = build_model(model, parallel, pre_process=state.is_first_stage, post_process=state.is_last_stage)
    if args.command == "hf-to-mcore":
        load_hf_into_model(chunk, model, args.hf, state.tp_rank, state.tp_size)
        save_model_checkpoint(chunk, model, args.out)
    else:
        load_model_checkpoint(chunk, args.mcore)
        save_hf_checkpoint(chunk, model, args.out, dtype=args.dtype, tp_group=state.tp_group,
                           tp_size=state.tp_size, tp_rank=state.tp_rank, dp_rank=state.dp_rank)
    if state.rank == 0:
        print(f"wrote {args.out}")
    destroy_model_parallel()
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    from srpo_mcore.model.hf_checkpoint import CheckpointError
    from srpo_mcore.platform import configure_process_environment

    configure_process_environment()
    try:
        model = _check_inputs(args)
        if "WORLD_SIZE" not in os.environ:
            if args.tp * args.pp > 1:
                from srpo_mcore.distributed import relaunch_under_torchrun

                return relaunch_under_torchrun("srpo_mcore.convert", argv, args.tp * args.pp)
            from srpo_mcore.distributed import free_local_port

            os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                              MASTER_PORT=str(free_local_port()))
        _run(args, model)
    except (CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
