"""The quickstart's console summary of a finished run: ``python -m srpo_mcore.quickstart.summary RUN_DIR [START]``.

Prints, from ``RUN_DIR/metrics.jsonl``: held-out pass@1 per domain at every evaluation and its change, the step
stage 2 began, what History Resampling did at every epoch end per domain (prompts in the epoch, dropped because all
their rollouts were correct, left for the next epoch), the zero-advantage group fraction early and late, time per
phase, and (given ``START``, a Unix time) the wall time since then.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HR = "history_resampling/"


def load_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def history_resampling_epochs(rows: list[dict], domain: str) -> list[dict]:
    """One record per finished epoch of ``domain``'s History Resampling (the trainer repeats the last one on every
    step until the next epoch ends), in epoch order."""
    prefix = f"sampling/{domain}/{HR}"
    epochs = {}
    for r in rows:
        if f"{prefix}epoch" in r:
            epochs[int(r[f"{prefix}epoch"])] = {k[len(prefix):]: v for k, v in r.items() if k.startswith(prefix)}
    return [epochs[k] for k in sorted(epochs)]


def summary_lines(rows: list[dict]) -> list[str]:
    lines = []
    evals = [r for r in rows if "eval/accuracy" in r]
    if evals:
        lines.append("held-out pass@1 (train.eval_samples_per_prompt samples per problem):")
    for key in ("eval/math_pass@1", "eval/code_pass@1", "eval/accuracy"):
        seen = [r for r in evals if key in r]
        if seen:
            change = f"  (change {100 * (seen[-1][key] - seen[0][key]):+.1f} points)" if len(seen) >= 2 else ""
            lines.append(f"  {key[5:]:<14}" + "  ".join(f"step {r['step']}: {r[key]:.3f}" for r in seen) + change)
    switch = next((r["step"] for r in rows if r.get("stage/switched")), None)
    if switch is not None:
        lines.append(f"stage 2 (math + code) from step {switch + 1}")
    for domain in ("math", "code"):
        epochs = history_resampling_epochs(rows, domain)
        if epochs:
            lines.append(f"History Resampling, {domain} ({len(epochs)} epoch ends): prompts in the epoch -dropped "
                         "(all rollouts correct) -> next epoch's active set")
            lines.append("  " + ", ".join(f"{e['num_prompts']:.0f} -{e['dropped_all_correct']:.0f} -> {e['kept']:.0f}"
                                          + (" (reset to all)" if e["reset_to_full_set"] else "") for e in epochs))
    zero = [(r["step"], r["advantage/zero_group_fraction"]) for r in rows if "advantage/zero_group_fraction" in r]
    if len(zero) >= 20:
        k = len(zero) // 10
        first, last = [v for _, v in zero[:k]], [v for _, v in zero[-k:]]
        lines.append(f"zero-advantage group fraction: {sum(first) / k:.2f} over the first {k} steps, "
                     f"{sum(last) / k:.2f} over the last {k}")
    phases: dict[str, float] = {}
    for r in rows:
        for k, v in r.items():
            if k.startswith("time/") and k not in ("time/step_s", "time/iteration_s"):
                phases[k[5:-2]] = phases.get(k[5:-2], 0.0) + v
    if phases:
        lines.append("time per phase (s): " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(phases.items())))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or len(args) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    run_dir = Path(args[0])
    print("\n".join(summary_lines(load_rows(run_dir))))
    if len(args) == 2:
        print(f"SRPO wall time: {time.time() - float(args[1]):.0f} s; curves: {run_dir / 'curves.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
