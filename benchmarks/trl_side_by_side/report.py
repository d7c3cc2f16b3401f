"""The side-by-side report from what the runs left: step times (ours: ``run/metrics.jsonl``; TRL:
``trl/steps.jsonl``, both ``{"step", "time/step_s", "time/<phase>_s"}`` rows) and the evaluator's
``summary.json`` per checkpoint and seed. Pure: reads files, computes, writes ``side_by_side.md`` / ``.json``."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

SIDES = ("ours", "trl")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def step_stats(records: list[dict], warmup_steps: int) -> dict:
    """Seconds per step over the steps after the first ``warmup_steps`` (start-up lands in the first step on both
    sides), and the median of each ``time/<phase>_s`` over the same steps."""
    rows = [r for r in records if "time/step_s" in r and r["step"] > warmup_steps]
    if not rows:
        seen = [r.get("step") for r in records]
        raise ValueError(f"no timed steps after the first {warmup_steps} (steps seen: {seen})")
    seconds = [r["time/step_s"] for r in rows]
    phases = sorted({k for r in rows for k in r if k.startswith("time/") and k != "time/step_s"})
    return {"steps_timed": len(rows), "first_timed_step": rows[0]["step"], "last_step": rows[-1]["step"],
            "median_s": statistics.median(seconds), "mean_s": statistics.fmean(seconds),
            "p90_s": percentile(seconds, 90), "phase_medians_s": {
                k.removeprefix("time/").removesuffix("_s"): statistics.median(r.get(k, 0.0) for r in rows)
                for k in phases}}


def pass_at_1(summary_files: list[Path]) -> dict:
    """Mean and sample std over evaluation seeds of each seed's pass@1 (one data file per evaluation)."""
    values = []
    for path in summary_files:
        summary = json.loads(path.read_text())
        if summary.get("pending"):
            raise ValueError(f"{path}: evaluation unfinished (pending {summary['pending']})")
        (bench,) = summary["benchmarks"].values()
        values.append(bench["pass@1"])
    return {"seeds": len(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "per_seed": values}


def fmt_pass(p: dict | None) -> str:
    return "-" if p is None else f"{p['mean']:.3f} ± {p['std']:.3f} (n={p['seeds']})"


def markdown(result: dict) -> str:
    sides = [s for s in SIDES if s in result["steps"]]
    names = {"ours": "ours (SRPO)", "trl": "TRL GRPOTrainer"}
    m = result["machine"]
    lines = ["# SRPO trainer vs TRL GRPOTrainer, side by side", "",
             f"Stage-1 task (math only), {result['steps_run']} steps; step times over steps after the first "
             f"{result['warmup_steps']}. Machine: {m['nproc']} CPUs; load average (1, 5, 15 min) per side before "
             "and after its run in the table. Command: `" + " ".join(result["command"]) + "`", "",
             "| | " + " | ".join(names[s] for s in sides) + " |", "|---|" + "---|" * len(sides)]

    def row(label, cell):
        lines.append(f"| {label} | " + " | ".join(cell(s) for s in sides) + " |")

    row("steps timed", lambda s: str(result["steps"][s]["steps_timed"]))
    row("median s/step", lambda s: f"{result['steps'][s]['median_s']:.3f}")
    row("mean s/step", lambda s: f"{result['steps'][s]['mean_s']:.3f}")
    row("p90 s/step", lambda s: f"{result['steps'][s]['p90_s']:.3f}")
    phases = sorted({p for s in sides for p in result["steps"][s]["phase_medians_s"]})
    for p in phases:
        row(f"median {p} s", lambda s, p=p: (f"{result['steps'][s]['phase_medians_s'][p]:.3f}"
                                           if p in result["steps"][s]["phase_medians_s"] else "-"))
    for step in result["eval_steps"]:
        row(f"held-out pass@1, step {step}", lambda s, step=step: fmt_pass(result["pass@1"].get(s, {}).get(str(step))))
    row("load avg before run", lambda s: " ".join(f"{x:.2f}" for x in m["load_before"].get(s, [])))
    row("load avg after run", lambda s: " ".join(f"{x:.2f}" for x in m["load_after"].get(s, [])))
    lines += ["", f"pass@1: {result['eval']['k']} samples per problem per seed, mean ± sample std over seeds; one "
              "evaluator (`python -m srpo_mcore.eval`) for every checkpoint, step 0 is the shared base model.", "",
              "## Settings", "", "| setting | ours | TRL |", "|---|---|---|"]
    lines += [f"| {name} | {ours} | {trl} |" for name, ours, trl in result["settings"]]
    return "\n".join(lines) + "\n"


def write(out: Path, result: dict) -> str:
    text = markdown(result)
    (out / "side_by_side.md").write_text(text)
    (out / "side_by_side.json").write_text(json.dumps(result, indent=1))
    return text
