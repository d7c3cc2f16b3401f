"""Benchmark: gathering every engine's rollouts to every rank, packed tensors (packed.py) vs pickled objects.

    torchrun --nproc_per_node=2 -m benchmarks.rollout_gather [--samples 1024] [--tokens 2048]
        [--rollout-tp 1 2] [--repeats 3] [--out rollout_gather.json]

Each engine holds ``--samples`` synthetic rollouts as vLLM hands them over (per sample, a list of token ids and
a list of float32 log-probs; response length uniform in [tokens/2, tokens], ids in Qwen2.5's vocabulary). Two
ways to put all of them on every rank:

* ``object``: the engine's former path: records with tuples of Python numbers, ``all_gather_object`` of each
  engine's list (sent by its first rank, ``None`` from the others);
* ``packed``: the engine's path now: :class:`RaggedRows` built from the lists, :func:`gather_from_engines` (one
  broadcast per engine), :class:`RolloutSample` records holding tensor views.

Both include building what is sent and making the records. Reported: median seconds over ``--repeats`` (slowest
rank); bytes one engine contributes (the pickle, or the packed buffer); bytes each rank receives
(``all_gather_object`` pads every rank's contribution, ``None`` included, to the largest: world x pickle; the
broadcasts: engines x buffer); the memory the gathered records hold on a rank (resident-set growth while they
are alive, rank 0, after a collection); rollout tokens per second. The two results are checked equal. Prints a
table; rank 0 writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import random
import statistics
import time
from dataclasses import dataclass
from functools import partial

import torch
import torch.distributed as dist

from srpo_mcore.rollout.engine import FINISH_REASONS, RolloutSample, return_freed_memory_to_os
from srpo_mcore.rollout.packed import RaggedRows, gather_from_engines

VOCAB = 151_936


@dataclass(frozen=True)
class ObjectSample:
    """The former record: Python tuples."""

    prompt_index: int
    response_token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]


def engine_outputs(engine: int, count: int, tokens: int) -> list[tuple[int, list[int], list[float]]]:
    """``(prompt index, token ids, log-probs)`` per sample, as Python lists (what vLLM returns)."""
    rng = random.Random(engine)
    gen = torch.Generator().manual_seed(engine)
    out = []
    for i in range(count):
        n = rng.randint(tokens // 2, tokens)
        out.append((engine * count + i, torch.randint(0, VOCAB, (n,), generator=gen).tolist(),
                    (-torch.rand(n, generator=gen) * 4).tolist()))
    return out


def gather_objects(local, is_source: bool) -> list[ObjectSample]:
    mine = [ObjectSample(i, tuple(ids), tuple(lps)) for i, ids, lps in local]
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine if is_source else None)
    return [s for part in everyone if part is not None for s in part]


def gather_packed(local, engine: int, engine_ranks: list[list[int]]) -> list[RolloutSample]:
    rows = RaggedRows.build([(i, 0) for i, _, _ in local], [lps for _, _, lps in local],
                            [ids for _, ids, _ in local], columns=2)
    return [RolloutSample(prompt_index=i, sample_index=j, prompt_token_ids=(1, 2, 3), response_token_ids=ids,
                          logprobs=lps, finish_reason=FINISH_REASONS[0], weights_version=1)
            for part in gather_from_engines(rows, engine_index=engine, engine_ranks=engine_ranks)
            for (i, j), ids, lps in part.views()]


def as_python(samples) -> list[tuple]:
    def plain(x):
        return tuple(x.tolist()) if isinstance(x, torch.Tensor) else tuple(x)

    return sorted((s.prompt_index, plain(s.response_token_ids), plain(s.logprobs)) for s in samples)


def resident_bytes() -> int:
    gc.collect()
    return_freed_memory_to_os()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def timed(fn, repeats: int) -> tuple[float, object, int]:
    """Median seconds (slowest rank), the last result, and the resident memory that result holds (this rank)."""
    times, result = [], None
    for _ in range(repeats):
        result = None
        before = resident_bytes()
        dist.barrier()
        start = time.perf_counter()
        result = fn()
        elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        times.append(elapsed.item())
    return statistics.median(times), result, resident_bytes() - before


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1024, help="rollouts per engine")
    ap.add_argument("--tokens", type=int, default=2048, help="longest response (shortest is half)")
    ap.add_argument("--rollout-tp", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    rows = []
    for tp in args.rollout_tp:
        if world % tp:
            raise SystemExit(f"--rollout-tp {tp} does not divide the world size {world}")
        engine, engines = rank // tp, world // tp
        engine_ranks = [list(range(e * tp, (e + 1) * tp)) for e in range(engines)]
        local = engine_outputs(engine, args.samples, args.tokens)
        t_obj, by_objects, mem_obj = timed(partial(gather_objects, local, rank % tp == 0), args.repeats)
        total_tokens = sum(len(s.response_token_ids) for s in by_objects)
        reference = as_python(by_objects)
        del by_objects
        t_packed, by_packed, mem_packed = timed(partial(gather_packed, local, engine, engine_ranks), args.repeats)
        if as_python(by_packed) != reference:
            raise SystemExit("the two gathers disagree")
        del by_packed, reference
        pickled = len(pickle.dumps([ObjectSample(i, tuple(ids), tuple(lps)) for i, ids, lps in local]))
        packed = RaggedRows.build([(i, 0) for i, _, _ in local], [lps for _, _, lps in local],
                                  [ids for _, ids, _ in local], columns=2).to_bytes().numel()
        received = {"object": world * pickled, "packed": engines * packed}
        for name, seconds, nbytes, held in (("object", t_obj, pickled, mem_obj), ("packed", t_packed, packed,
                                                                                 mem_packed)):
            rows.append({"method": name, "world": world, "rollout_tp": tp, "engines": engines,
                         "samples": engines * args.samples, "tokens": total_tokens, "seconds": round(seconds, 3),
                         "bytes_per_engine": nbytes, "bytes_received_per_rank": received[name],
                         "bytes_held_per_rank": held, "Mtokens_per_s": round(total_tokens / seconds / 1e6, 2)})
    if rank == 0:
        print(f"{'method':<7} {'TP':>3} {'engines':>7} {'samples':>8} {'tokens':>11} {'seconds':>8} "
              f"{'MB/engine':>10} {'MB in/rank':>10} {'MB held':>8} {'Mtok/s':>7}")
        for r in rows:
            print(f"{r['method']:<7} {r['rollout_tp']:>3} {r['engines']:>7} {r['samples']:>8} {r['tokens']:>11,} "
                  f"{r['seconds']:>8.3f} {r['bytes_per_engine'] / 1e6:>10.1f} "
                  f"{r['bytes_received_per_rank'] / 1e6:>10.1f} {r['bytes_held_per_rank'] / 1e6:>8.1f} "
                  f"{r['Mtokens_per_s']:>7.2f}")
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"rows": rows, "args": vars(args)}, f, indent=2)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
