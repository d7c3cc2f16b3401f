"""Rank code for the packed-gather tests in tests/rollout/test_rollout_units.py (4 ranks, gloo, CPU, no vLLM).

Every rank derives every engine's rows from a seed (so the expected result is known everywhere), packs its own
engine's rows and gathers. Layouts: 2 engines of 2 ranks (engine 1 has no rows) and 4 engines of 1 rank (ragged
row counts, a zero-length row, no token ids). Then rank 3 alters one value: every rank must raise
RolloutDivergenceError naming engine 1. Rank 0 writes its findings to --out as JSON.
"""

import argparse
import json
import random

import torch.distributed as dist

from srpo_mcore.rollout.packed import RaggedRows, RolloutDivergenceError, gather_from_engines


def rows_of(engine: int, count: int, with_ids: bool):
    rng = random.Random(engine)
    meta, ids, values = [], [], []
    for i in range(count):
        n = 0 if i == 1 else rng.randint(1, 50)
        meta.append((engine, i, rng.randint(-2**40, 2**40)))
        ids.append([rng.randrange(152064) for _ in range(n)])
        values.append([float(rng.randint(-2**20, 0)) / 2**10 for _ in range(n)])  # exact in float32
    return meta, (ids if with_ids else None), values


def expected_rows(meta, ids, values):
    return [[list(m), list(t) if ids is not None else [], list(v)]
            for m, t, v in zip(meta, ids if ids is not None else [()] * len(meta), values)]


def run_layout(tp: int, counts: list[int], with_ids: bool, tamper: bool = False):
    rank, world = dist.get_rank(), dist.get_world_size()
    engine = rank // tp
    engine_ranks = [list(range(e * tp, (e + 1) * tp)) for e in range(world // tp)]
    meta, ids, values = rows_of(engine, counts[engine], with_ids)
    if tamper and rank == 3:
        values[0][0] += 1.0
    gathered = gather_from_engines(RaggedRows.build(meta, values, ids, columns=3), engine_index=engine,
                                   engine_ranks=engine_ranks)
    got = [[[m, list(t), list(v)] for m, t, v in part.rows()] for part in gathered]
    want = [expected_rows(*rows_of(e, counts[e], with_ids)) for e in range(world // tp)]
    return got == want


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    findings = {
        "tp2_one_engine_empty": run_layout(2, [5, 0], with_ids=True),
        "tp1_ragged": run_layout(1, [3, 7, 0, 2], with_ids=True),
        "tp1_values_only": run_layout(1, [4, 1, 2, 0], with_ids=False),
    }
    try:
        run_layout(2, [3, 3], with_ids=True, tamper=True)
        findings["divergence"] = "no error"
    except RolloutDivergenceError as err:
        findings["divergence"] = str(err)
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, findings)
    if dist.get_rank() == 0:
        with open(args.out, "w") as f:
            json.dump(everyone, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
