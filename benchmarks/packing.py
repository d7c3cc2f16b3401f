"""Benchmark of micro-batch planning: ``python -m benchmarks.packing [--json PATH]``.

Plans sequence lengths drawn uniformly from [min_length, max_length] over DP ranks x micro-batches with the
native planner at full size, then compares native and pure-Python reference (the same algorithm, the
baseline of the tests) on a smaller size, checking that both give the same plan.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from srpo_mcore.train.packing import MicroBatchPlan, plan_micro_batches


def timed_plan(
    lengths: np.ndarray, args: argparse.Namespace, backend: str, repeats: int
) -> tuple[float, MicroBatchPlan]:
    best, plan = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        plan = plan_micro_batches(
            lengths,
            num_ranks=args.dp,
            token_budget=args.token_budget,
            equal_counts=args.equal_counts,
            backend=backend,
        )
        best = min(best, time.perf_counter() - start)
    return best, plan


def row(
    name: str, backend: str, lengths: np.ndarray, budget: int, seconds: float, plan: MicroBatchPlan
) -> dict:
    """One table row; budget_fill is the share of the ranks' micro-batch token budget that holds tokens."""
    slots = plan.num_ranks * plan.num_micro_batches * budget
    return {
        "case": name,
        "backend": backend,
        "sequences": int(lengths.size),
        "tokens": int(lengths.sum()),
        "dp": plan.num_ranks,
        "token_budget": budget,
        "micro_batches_per_rank": plan.num_micro_batches,
        "imbalance_pct": 100 * plan.imbalance,
        "budget_fill_pct": 100 * float(lengths.sum()) / slots,
        "max_micro_batch_tokens": int(plan.micro_batch_tokens.max()),
        "seconds": seconds,
    }


COLUMNS = [  # (row key, heading, format)
    ("case", "case", "<6"),
    ("backend", "backend", "<9"),
    ("sequences", "sequences", ">10"),
    ("dp", "dp", ">3"),
    ("micro_batches_per_rank", "mb/rank", ">8"),
    ("imbalance_pct", "imbal %", ">9.5f"),
    ("budget_fill_pct", "fill %", ">7.2f"),
    ("seconds", "seconds", ">9.4f"),
]


def print_table(rows: list[dict]) -> None:
    header = " ".join(f"{heading:{fmt.split('.')[0]}}" for _, heading, fmt in COLUMNS)
    print(header)
    print("-" * len(header))
    for r in rows:
        print(" ".join(f"{r[key]:{fmt}}" for key, _, fmt in COLUMNS))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sequences", type=int, default=1_000_000)
    parser.add_argument("--reference-sequences", type=int, default=20_000)
    parser.add_argument("--min-length", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=32768)
    parser.add_argument("--dp", type=int, default=8)
    parser.add_argument("--token-budget", type=int, default=65536)
    parser.add_argument("--equal-counts", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the rows (and the machine) here")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    full = rng.integers(args.min_length, args.max_length + 1, size=args.sequences)
    small = full[: args.reference_sequences]
    rows = []
    seconds, plan = timed_plan(full, args, "native", args.repeats)
    rows.append(row("full", "native", full, args.token_budget, seconds, plan))
    seconds, native = timed_plan(small, args, "native", args.repeats)
    rows.append(row("small", "native", small, args.token_budget, seconds, native))
    seconds, reference = timed_plan(small, args, "reference", 1)
    rows.append(row("small", "reference", small, args.token_budget, seconds, reference))
    same = bool(
        np.array_equal(native.indices, reference.indices)
        and np.array_equal(native.offsets, reference.offsets)
    )

    print_table(rows)
    speed_up = rows[2]["seconds"] / rows[1]["seconds"]
    print(f"native == reference on the small case: {same}; native speed-up x{speed_up:.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "rows": rows,
                    "native_equals_reference": same,
                    "settings": vars(args),
                    "machine": {
                        "platform": platform.platform(),
                        "processor": platform.processor(),
                        "python": platform.python_version(),
                    },
                },
                f,
                indent=2,
            )
    if not same:
        raise SystemExit("native and reference plans differ")
    return rows


if __name__ == "__main__":
    main()
