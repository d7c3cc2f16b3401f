"""Reward throughput: math verifications/s and sandboxed programs/s next to bare subprocess runs.

    python -m benchmarks.rewards [--json PATH] [--workers 2] [--math-problems 300] [--programs 200]

Math: typical responses built from the shared data's gold answers (MATH-500, AIME 2024, AMC): per problem a
reasoning text ending in ``\\boxed{}`` with the gold answer, an equivalent rewrite of it, and two wrong
answers. Measured three ways: math-verify called directly in one process (the baseline), the worker pool
with the exact-string fast paths off (every pair goes to math-verify), and the full pipeline (extraction,
fast paths, math-verify for the rest; the verdict cache off). Per-core figures are verifications per CPU
second used (the workers' and this process's), so they hold on a machine shared with other work.

Each figure is the median of interleaved rounds. Sandbox: a trivial stdin/stdout program run ``--programs`` times on ``--workers`` threads, bare
(``python -I -S prog.py`` in a subprocess, the same interpreter) and sandboxed (warm sandboxes, and a fresh
bubblewrap per launch). Timings are wall-clock on whatever else the machine is doing: run it twice.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from srpo_mcore.rewards.math_answer import extract_answer, normalize_gold
from srpo_mcore.rewards.math_verify_pool import MathVerifier
from srpo_mcore.rewards.sandbox import Sandbox, SandboxLimits

REASONING = ("<think>\nLet me set up the problem. We know the constraints, so we can write the equation and "
             "simplify step by step. Checking the edge cases, the computation gives the value below, and "
             "substituting back confirms it.\n</think>\nTherefore the final answer is $\\boxed{%s}$.")


def shared_data_dir() -> Path | None:
    here = Path(__file__).resolve().parents[2]
    for cand in (here.parent / "shared" / "data", Path("/work/shared/data")):
        if cand.is_dir():
            return cand
    return None


def _golds(data: Path, n: int) -> list[str]:
    golds: list[str] = []
    for name in ("math/math500.json", "math/aime24.json", "math/amc.json"):
        path = data / name
        if path.exists():
            golds += [g for g in (normalize_gold(r["answer"]) for r in json.loads(path.read_text())) if g]
    return golds[:n]


def _equivalent(gold: str) -> str:
    if gold.isdigit():
        return "0" + gold  # AIME style zero padding
    return gold.replace("\\frac", "\\dfrac").replace(",", ", ") if ("\\frac" in gold or "," in gold) else " " + gold


def _wrong(gold: str, rng: random.Random) -> str:
    digits = [i for i, c in enumerate(gold) if c.isdigit()]
    if digits:
        i = rng.choice(digits)
        return gold[:i] + str((int(gold[i]) + rng.randint(1, 8)) % 10) + gold[i + 1:]
    return gold + "+1"


def math_workload(n_problems: int, seed: int = 0) -> list[tuple[str, str]]:
    """(gold, response) pairs: per problem the gold, an equivalent form and two wrong answers."""
    data = shared_data_dir()
    if data is None:
        raise SystemExit("shared data not found (../shared/data next to the checkout, or /work/shared/data)")
    rng = random.Random(seed)
    pairs = []
    for gold in _golds(data, n_problems):
        wrong1 = _wrong(gold, rng)
        wrong2 = _wrong(wrong1, rng)
        for answer in (gold, _equivalent(gold), wrong1, wrong2):
            pairs.append((gold, REASONING % answer))
    return pairs


def bench_math(n_problems: int, workers: int, rounds: int = 3) -> dict:
    """Rounds on disjoint problems (a gold repeats only within its own four responses, as in a GRPO group),
    the modes interleaved so that a change in machine load hits all alike; the median round is reported."""
    pairs = math_workload(n_problems)
    per_round = max(4, len(pairs) // rounds // 4 * 4)
    chunks = [pairs[k * per_round:(k + 1) * per_round] for k in range(rounds)]
    out: dict = {"responses": len(pairs), "rounds": rounds, "workers": workers}

    from math_verify import parse, verify  # the baseline: one process, no pool

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    rates: dict[str, list[float]] = {"direct_1proc": [], "pool_no_fast_path": [], "pool_full_pipeline": []}
    per_cpu_s: dict[str, list[float]] = {k: [] for k in rates}  # verifications per CPU second used
    correct: dict[str, int] = {k: 0 for k in rates}
    with MathVerifier(workers=workers, timeout_s=5.0, cache_size=0, fast_path=False) as raw, \
            MathVerifier(workers=workers, timeout_s=5.0, cache_size=0, fast_path=True) as full:
        raw.wait_ready()
        full.wait_ready()
        for chunk in chunks:
            t, cpu = time.perf_counter(), time.process_time()
            for g, r in chunk:
                correct["direct_1proc"] += verify(parse("\\boxed{" + g + "}"),
                                                  parse("\\boxed{" + (extract_answer(r) or "") + "}"))
            rates["direct_1proc"].append(len(chunk) / (time.perf_counter() - t))
            per_cpu_s["direct_1proc"].append(len(chunk) / (time.process_time() - cpu))
            for label, verifier in (("pool_no_fast_path", raw), ("pool_full_pipeline", full)):
                t, cpu = time.perf_counter(), time.process_time() + _workers_cpu(verifier)
                verdicts = verifier.verify_many([(g, extract_answer(r)) for g, r in chunk])
                rates[label].append(len(chunk) / (time.perf_counter() - t))
                per_cpu_s[label].append(len(chunk) / (time.process_time() + _workers_cpu(verifier) - cpu))
                correct[label] += sum(v.correct for v in verdicts)
        out["full_pipeline_sent_to_workers"] = sum(
            v.status not in ("fast_path", "no_answer", "no_gold")
            for v in full.verify_many([(g, extract_answer(r)) for g, r in chunks[0]])) / len(chunks[0])
    for label, values in rates.items():
        out[f"{label}_per_s"] = _median(values)
        out[f"{label}_per_cpu_second"] = _median(per_cpu_s[label])  # = per core, whatever else runs
        out[f"{label}_correct_fraction"] = correct[label] / (per_round * rounds)
    return out


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _workers_cpu(verifier: MathVerifier) -> float:
    """CPU seconds used so far by the pool's worker processes (user + system)."""
    total = 0.0
    for w in verifier._workers:
        try:
            fields = Path(f"/proc/{w.proc.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


PROGRAM = "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n"


def _timed(fn, n: int, workers: int) -> float:
    """Programs per second running ``fn`` ``n`` times on ``workers`` threads."""
    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(lambda _: fn(), range(n)))
    return n / (time.perf_counter() - t)


def bench_sandbox(n: int, workers: int, fallback: bool) -> dict:
    limits = SandboxLimits(cpu_seconds=2, wall_seconds=10)
    stdin = " ".join(str(i) for i in range(100))
    out: dict = {"programs": n, "workers": workers}
    with Sandbox(limits) as warm, Sandbox(limits, reuse=1) as fresh, tempfile.TemporaryDirectory() as tmp:
        prog = Path(tmp) / "prog.py"
        prog.write_text(PROGRAM)
        os.chmod(tmp, 0o755)
        out["backend"], out["python"] = warm.backend, warm.python
        expected = str(sum(range(100)))

        def bare():
            r = subprocess.run([warm.python, "-I", "-S", str(prog)], input=stdin.encode(), capture_output=True)
            assert r.stdout.decode().strip() == expected

        def sandboxed(box):
            def go():
                r = box.run(PROGRAM, stdin)
                assert r.status == "ok" and r.stdout.strip() == expected, r
            return go

        for f in (bare, sandboxed(warm)):
            _timed(f, 2 * workers, workers)  # warm up
        # Interleave rounds so that a change in machine load hits both alike.
        rounds = {"bare": [], "sandbox_warm": [], "sandbox_fresh_bwrap": []}
        per_round = max(workers, n // 4)
        for _ in range(4):
            rounds["bare"].append(_timed(bare, per_round, workers))
            rounds["sandbox_warm"].append(_timed(sandboxed(warm), per_round, workers))
            rounds["sandbox_fresh_bwrap"].append(_timed(sandboxed(fresh), per_round, workers))
        for key, rates in rounds.items():
            out[f"{key}_per_s"] = sum(rates) / len(rates)
        if fallback:
            with Sandbox(limits, backend="rlimits") as fb:
                out["sandbox_rlimits_fallback_per_s"] = _timed(sandboxed(fb), per_round, workers)
    out["overhead_warm_x"] = out["bare_per_s"] / out["sandbox_warm_per_s"]
    out["overhead_fresh_bwrap_x"] = out["bare_per_s"] / out["sandbox_fresh_bwrap_per_s"]
    return out


def _table(results: dict) -> str:
    rows = [("metric", "value")]
    for section, values in results.items():
        for k, v in values.items():
            rows.append((f"{section}.{k}", f"{v:.2f}" if isinstance(v, float) else str(v)))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rewards", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="also write the results as JSON here")
    ap.add_argument("--workers", type=int, default=2, help="math processes and sandbox threads")
    ap.add_argument("--math-problems", type=int, default=300, help="gold answers used (4 responses each)")
    ap.add_argument("--programs", type=int, default=200, help="program runs per sandbox measurement")
    ap.add_argument("--fallback", action="store_true", help="also time the rlimits fallback backend")
    ap.add_argument("--skip-math", action="store_true")
    ap.add_argument("--skip-sandbox", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results: dict = {"machine": {"cpus": os.cpu_count() or 0, "python": sys.version.split()[0],
                                 "load_avg_1m": os.getloadavg()[0]}}
    if not args.skip_math:
        results["math"] = bench_math(args.math_problems, args.workers)
    if not args.skip_sandbox:
        results["sandbox"] = bench_sandbox(args.programs, args.workers, args.fallback)
    results["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    print(_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
