"""Weight-sync benchmark: Megatron (trainer TP) -> vLLM (rollout TP), against plain copies of the same bytes.

    torchrun --nproc_per_node=2 -m benchmarks.weight_sync \
        [--model configs/models/qwen2.5-0.5b.yaml] [--dtype bfloat16] [--rollout-tp 2 1] [--repeats 3]

A Qwen2.5-shaped model with random weights is built at trainer TP = world size (PP 1). For each rollout TP, one
engine is started and, per transport, a warm-up sync is followed by ``--repeats`` timed syncs (median reported).
In the same run, on every rank at once, it measures:

* ``copy``: ``dst.copy_(src)`` of as many bytes as one sync delivers to each rank, in bucket-sized pieces between
  pre-faulted buffers: the plain-copy throughput the sync is compared with (``ratio`` = sync GB/s / copy GB/s);
* ``vllm reload``: vLLM's ``reload_weights`` of the same HF tensors, already materialised, bucket by bucket (only
  the loads timed): the floor any sync into this engine pays (``of floor`` = sync GB/s / reload GB/s).

GB/s counts the HF bytes in the rollout dtype that reach each rank (the full model: vLLM loads checkpoint-format
tensors and cuts its own TP slice). The sync time includes the handshake and, for a tied model such as
Qwen2.5-0.5B, the lm_head refresh (engine.py); the reload floor does not. Prints a table; rank 0 writes JSON
(``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist

from srpo_mcore.platform import configure_process_environment


def _timed(fn, repeats: int) -> list[float]:
    """Seconds per call (slowest rank), each call started together on every rank."""
    times = []
    for _ in range(repeats):
        dist.barrier()
        t = time.perf_counter()
        fn()
        elapsed = torch.tensor([time.perf_counter() - t], dtype=torch.float64)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        times.append(elapsed.item())
    return times


def timed_syncs(sync, engine, repeats: int) -> list:
    stats = []
    _timed(lambda: stats.append(sync.sync(engine)), repeats)
    return stats


def plain_copy_seconds(nbytes: int, chunk_bytes: int, repeats: int) -> float:
    """``nbytes`` copied as ``chunk_bytes`` pieces (the sync's bucket size) between pre-faulted buffers."""
    chunk = min(nbytes, chunk_bytes)
    src = torch.ones(chunk, dtype=torch.uint8)
    dst = torch.zeros(chunk, dtype=torch.uint8)
    sizes = [chunk] * (nbytes // chunk) + ([nbytes % chunk] if nbytes % chunk else [])

    def copy():
        for size in sizes:
            dst[:size].copy_(src[:size])

    copy()
    return statistics.median(_timed(copy, repeats))


def vllm_reload_seconds(sync, engine, repeats: int) -> float:
    """vLLM's own reload of already materialised HF tensors, bucket by bucket (only the loads are timed)."""
    runs = []
    for _ in range(repeats + 1):  # the first pass warms up
        seconds = 0.0
        for _, tensors in sync.iter_buckets():
            own = [(name, t.clone()) for name, t in tensors]
            t = time.perf_counter()
            engine.load_weights(own)
            seconds += time.perf_counter() - t
        runs.append(seconds)
    slowest = torch.tensor([statistics.median(runs[1:])], dtype=torch.float64)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    engine.finish_weight_update(engine.weights_version)
    return slowest.item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="configs/models/qwen2.5-0.5b.yaml")
    ap.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    ap.add_argument("--rollout-tp", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--transports", nargs="+", default=["shm", "collective"], choices=["shm", "collective"])
    ap.add_argument("--bucket-mb", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--run-dir", default="runs/benchmarks/weight_sync")
    ap.add_argument("--out", default=None, help="JSON path (default: <run-dir>/weight_sync.json)")
    args = ap.parse_args()

    configure_process_environment()
    from srpo_mcore.config import load_config
    from srpo_mcore.distributed import init_model_parallel, init_process_group
    from srpo_mcore.model.dtypes import torch_dtype
    from srpo_mcore.model.qwen2 import build_model
    from srpo_mcore.rollout.engine import RolloutEngine, shutdown_job
    from srpo_mcore.rollout.env import configure_vllm_environment
    from srpo_mcore.rollout.weight_sync import WeightSync

    init_process_group()
    world = dist.get_world_size()
    configure_vllm_environment(args.run_dir)
    overrides = [f"parallel.tensor_model_parallel_size={world}", f"model.params_dtype={args.dtype}",
                 "model.transformer_impl=local", f"rollout.dtype={args.dtype}", "rollout.max_prompt_length=64",
                 "rollout.max_response_length=64", "rollout.cpu_kv_cache_gib=0.25",
                 f"rollout.sync_bucket_mb={args.bucket_mb}", "train.max_tokens_per_micro_batch=4096"]
    cfg = load_config(args.model, overrides)
    dtype = torch_dtype(args.dtype)
    state = init_model_parallel(world, 1, seed=0)
    t = time.perf_counter()
    model = build_model(cfg.model, cfg.parallel, pre_process=True, post_process=True)
    build_s = time.perf_counter() - t
    n_params = sum(p.numel() for p in model.parameters())  # this rank's shard

    rows, engine = [], None
    for rollout_tp in args.rollout_tp:
        rcfg = dataclasses.replace(cfg.rollout, tensor_parallel_size=rollout_tp)
        t = time.perf_counter()
        engine = RolloutEngine(rcfg, cfg.model, seed=0, dtype=dtype)
        start_s = time.perf_counter() - t
        for kind in args.transports:
            sync = WeightSync(model, cfg.model, state, rcfg, dtype=dtype, transport=kind)
            nbytes = sync.total_bytes
            first = sync.sync(engine)  # warm-up: page faults, vLLM's first materialisation
            stats = timed_syncs(sync, engine, args.repeats)
            seconds = statistics.median(s.seconds for s in stats)
            copy_s = plain_copy_seconds(nbytes, args.bucket_mb * 2**20, args.repeats)
            reload_s = vllm_reload_seconds(sync, engine, args.repeats)
            rows.append({
                "trainer_tp": world, "rollout_tp": rollout_tp, "transport": kind, "dtype": args.dtype,
                "bytes": nbytes, "buckets": len(sync.buckets), "sync_s": seconds,
                "sync_fetch_s": statistics.median(s.fetch_seconds for s in stats),
                "sync_load_s": statistics.median(s.load_seconds for s in stats), "first_sync_s": first.seconds,
                "sync_gb_s": nbytes / seconds / 1e9, "copy_gb_s": nbytes / copy_s / 1e9,
                "vllm_reload_gb_s": nbytes / reload_s / 1e9, "ratio_to_copy": copy_s / seconds,
                "ratio_to_vllm_reload": reload_s / seconds, "engine_start_s": start_s,
            })
            sync.close()
        engine.shutdown(keep_default_group=True)
        engine = None

    if dist.get_rank() == 0:
        print(f"\nweight sync, {cfg.model.name} ({args.dtype}, {n_params * world / 1e6:.0f}M params, random weights), "
              f"trainer TP{world}, {world} ranks on {len(os.sched_getaffinity(0))} cores; "
              f"model build {build_s:.0f} s")
        head = (f"{'rollout':>7} {'transport':>10} {'GB':>5} {'bkts':>4} {'sync s':>7} {'fetch s':>7} {'load s':>7} "
                f"{'sync GB/s':>9} {'copy GB/s':>9} {'ratio':>6} {'reload GB/s':>11} {'of floor':>8}")
        print(head)
        for r in rows:
            print(f"{'TP' + str(r['rollout_tp']):>7} {r['transport']:>10} {r['bytes'] / 1e9:5.2f} {r['buckets']:4d} "
                  f"{r['sync_s']:7.2f} {r['sync_fetch_s']:7.2f} {r['sync_load_s']:7.2f} {r['sync_gb_s']:9.2f} "
                  f"{r['copy_gb_s']:9.2f} {r['ratio_to_copy']:6.2f} {r['vllm_reload_gb_s']:11.2f} "
                  f"{r['ratio_to_vllm_reload']:8.2f}")
        out = Path(args.out or Path(args.run_dir) / "weight_sync.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"model": cfg.model.name, "world_size": world, "rows": rows}, indent=2))
        print(f"wrote {out}")
    shutdown_job(engine)


if __name__ == "__main__":
    main()
