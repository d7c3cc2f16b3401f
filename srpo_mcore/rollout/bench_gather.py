"""Benchmark: gathering every engine's rollouts to every rank, packed tensors (packed.py) vs pickled objects.

    torchrun --nproc_per_node=2 -m srpo_mcore.rollout.bench_gather [--samples 1024] [--tokens 2048]
        [--rollout-tp 1 2] [--repeats 3] [--out bench_gather.json]

Each engine holds ``--samples`` synthetic rollouts (response length uniform in [tokens/2, tokens], random ids in
Qwen2.5's vocabulary, float32 log-probs). Two ways to put all of them, as :class:`RolloutSample` records, on
every rank:

* ``object``: ``all_gather_object`` of each engine's list of samples (sent by its first rank, ``None`` from the
  others), the engine's former path;
* ``packed``: :func:`gather_from_engines` of the packed rows (one broadcast per engine) and unpacking into the
  same records.

Both include building what is sent and unpacking it. Reported: median seconds over ``--repeats`` (slowest
rank), the bytes one engine contributes (the pickle, or the packed buffer), the bytes each rank receives
(``all_gather_object`` pads every rank's contribution, ``None`` included, to the largest: world x pickle; the
broadcasts: engines x buffer), and the rollout tokens per second.
Prints a table; rank 0 writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import statistics
import time
from functools import partial

import torch
import torch.distributed as dist

from srpo_mcore.rollout.engine import FINISH_REASONS, RolloutSample
from srpo_mcore.rollout.packed import RaggedRows, gather_from_engines

VOCAB = 151_936


def synthetic_samples(engine: int, count: int, tokens: int) -> list[RolloutSample]:
    rng = random.Random(engine)
    gen = torch.Generator().manual_seed(engine)
    samples = []
    for i in range(count):
        n = rng.randint(tokens // 2, tokens)
        ids = tuple(torch.randint(0, VOCAB, (n,), generator=gen).tolist())
        lps = tuple((-torch.rand(n, generator=gen) * 4).tolist())
        samples.append(RolloutSample(prompt_index=engine * count + i, sample_index=0, prompt_token_ids=(1, 2, 3),
                                     response_token_ids=ids, logprobs=lps, finish_reason="stop", weights_version=1))
    return samples


def gather_objects(local: list[RolloutSample], is_source: bool) -> list[RolloutSample]:
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, local if is_source else None)
    return [s for part in everyone if part is not None for s in part]


def gather_packed(local: list[RolloutSample], engine: int, engine_ranks: list[list[int]]) -> list[RolloutSample]:
    rows = RaggedRows.build([(s.prompt_index, s.sample_index, FINISH_REASONS.index(s.finish_reason),
                              s.weights_version) for s in local], [s.logprobs for s in local],
                            [s.response_token_ids for s in local], columns=4)
    return [RolloutSample(prompt_index=i, sample_index=j, prompt_token_ids=(1, 2, 3), response_token_ids=ids,
                          logprobs=lps, finish_reason=FINISH_REASONS[f], weights_version=v)
            for part in gather_from_engines(rows, engine_index=engine, engine_ranks=engine_ranks)
            for (i, j, f, v), ids, lps in part.rows()]


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        result = None
        dist.barrier()
        start = time.perf_counter()
        result = fn()
        elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        times.append(elapsed.item())
    return statistics.median(times), result


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
        local = synthetic_samples(engine, args.samples, args.tokens)
        total_tokens = sum(len(s.response_token_ids) for e in range(engines)
                           for s in (local if e == engine else synthetic_samples(e, args.samples, args.tokens)))
        t_obj, by_objects = timed(partial(gather_objects, local, rank % tp == 0), args.repeats)
        t_packed, by_packed = timed(partial(gather_packed, local, engine, engine_ranks), args.repeats)
        if sorted(by_objects, key=lambda s: s.prompt_index) != sorted(by_packed, key=lambda s: s.prompt_index):
            raise SystemExit("the two gathers disagree")
        del by_objects, by_packed
        pickled = len(pickle.dumps(local))
        packed = RaggedRows.build([(0, 0, 0, 0)] * len(local), [s.logprobs for s in local],
                                  [s.response_token_ids for s in local], columns=4).to_bytes().numel()
        # all_gather_object pads every rank's pickle (None from all but one rank per engine) to the largest.
        received = {"object": world * pickled, "packed": engines * packed}
        for name, seconds, nbytes in (("object", t_obj, pickled), ("packed", t_packed, packed)):
            rows.append({"method": name, "world": world, "rollout_tp": tp, "engines": engines,
                         "samples": engines * args.samples, "tokens": total_tokens, "seconds": round(seconds, 3),
                         "bytes_per_engine": nbytes, "bytes_received_per_rank": received[name],
                         "Mtokens_per_s": round(total_tokens / seconds / 1e6, 2)})
    if rank == 0:
        print(f"{'method':<7} {'TP':>3} {'engines':>7} {'samples':>8} {'tokens':>11} {'seconds':>8} "
              f"{'MB/engine':>10} {'MB in/rank':>10} {'Mtok/s':>7}")
        for r in rows:
            print(f"{r['method']:<7} {r['rollout_tp']:>3} {r['engines']:>7} {r['samples']:>8} {r['tokens']:>11,} "
                  f"{r['seconds']:>8.3f} {r['bytes_per_engine'] / 1e6:>10.1f} "
                  f"{r['bytes_received_per_rank'] / 1e6:>10.1f} {r['Mtokens_per_s']:>7.2f}")
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"rows": rows, "args": vars(args)}, f, indent=2)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
