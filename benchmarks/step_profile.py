"""Where an SRPO step's time goes, on the quickstart task: phase medians per stage and, inside the phases, the
functions that take the time (cProfile of a few steps on every rank, ``debug.profile_steps``).

    python -m benchmarks.step_profile --out runs/profile --base runs/quickstart/base --data runs/quickstart/data
    python -m benchmarks.step_profile --out runs/profile --report-only    # re-read a finished run

One ``pretrain_srpo.py --nproc 2 --config configs/quickstart.yaml`` run of ``--steps`` steps with stage 2 from
``--switch-step`` (no evaluation, no checkpoints), ``debug.profile_steps`` set to ``--profile-steps``. Extra
arguments are config overrides (e.g. ``parallel.tensor_model_parallel_size=1``). Writes ``OUT/step_profile.md`` and
``.json``: per stage the median of every ``time/*`` phase (the first step of each stage is left out: warm-up and the
stage switch), and per profiled stage the mean seconds per step (over profiled steps and ranks) of the functions in
:data:`INSIDE`, and the top functions by own time.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# (label, file suffix, function name): what the phases are made of. Cumulative seconds, so nested rows overlap.
# cProfile sees the main thread only: rewards scored on the reward threads show as the wait in finish.
INSIDE = [
    ("rollout: vLLM engine steps, finished prompts streamed out", "srpo_mcore/rollout/engine.py", "stream_finished"),
    ("rollout: decode + submit finished prompts for scoring", "srpo_mcore/tasks/scoring.py", "on_prompt_done"),
    ("rollout: gather samples to every rank", "srpo_mcore/rollout/packed.py", "gather_from_engines"),
    ("rollout: same-request check (digest all-gather)", "srpo_mcore/rollout/engine.py", "_check_same_everywhere"),
    ("reward: wait for the last scores + all-gather (StreamingScorer.finish)", "srpo_mcore/tasks/scoring.py",
     "finish"),
    ("logprobs: Policy.compute_old_logprobs (0 on the on-policy fast path)", "srpo_mcore/train/policy.py",
     "compute_old_logprobs"),
    ("reference: Policy.compute_reference_logprobs (KL only)", "srpo_mcore/train/policy.py",
     "compute_reference_logprobs"),
    ("train: Policy.train_step", "srpo_mcore/train/policy.py", "train_step"),
    ("train+logprobs: Megatron forward/backward schedule", "srpo_mcore/model/forward.py", "forward_backward"),
    ("train+logprobs: autograd backward", "torch/autograd/__init__.py", "backward"),
    ("train+logprobs: packed core attention (SDPA per length group)", "srpo_mcore/model/packed_attention.py",
     "packed_causal_attention"),
    ("train+logprobs: RoPE of packed rows (Megatron unfused THD)", "megatron/core/models/common/embeddings/rope_utils.py",
     "_apply_rotary_pos_emb_thd"),
    ("train+logprobs: fused LM head log-probs (torch backend)", "fused_linear_logprobs_reference.py",
     "reference_fused_linear_logprobs"),
    ("train: optimizer step", "megatron/core/optimizer/optimizer.py", "step"),
    ("train: DDP gradient all-reduce", "megatron/core/distributed/distributed_data_parallel.py",
     "finish_grad_sync"),
    ("all: gloo all_reduce (TP, DP, metrics)", "torch/distributed/distributed_c10d.py", "all_reduce"),
    ("micro_batches: build micro-batches", "srpo_mcore/train/batch.py", "build_micro_batches"),
    ("sync: WeightSync.sync", "srpo_mcore/rollout/weight_sync.py", "sync"),
]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/profile")
    ap.add_argument("--base", default="runs/quickstart/base", help="pretrained HF model (make quickstart's)")
    ap.add_argument("--data", default="runs/quickstart/data", help="the quickstart's data directory")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--switch-step", type=int, default=13, help="first step of stage 2 (math + code)")
    ap.add_argument("--profile-steps", default="4,5,6,16,17,18", help="comma-separated steps run under cProfile")
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("overrides", nargs="*", help="extra config overrides")
    return ap.parse_args(argv)


def run(args, out: Path) -> None:
    data = Path(args.data)
    profile_steps = [int(s) for s in args.profile_steps.split(",") if s]
    cmd = [sys.executable, "pretrain_srpo.py", "--nproc", "2", "--config", args.config,
           f"train.run_dir={out / 'run'}", f"train.init_checkpoint={args.base}", f"train.steps={args.steps}",
           "train.eval_interval=0", "train.save_interval=0", "train.export_hf_at_end=false",
           f"stages.switch_step={args.switch_step}", "stages.plateau_window=0",
           f"data.math_train_files=[{data / 'train.jsonl'}]", f"data.code_train_files=[{data / 'code_train.jsonl'}]",
           f"data.eval_files=[{data / 'heldout.jsonl'},{data / 'code_heldout.jsonl'}]",
           f"debug.profile_steps=[{','.join(map(str, profile_steps))}]", "logging.progress_bar=false",
           *args.overrides]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    print("$", " ".join(cmd), flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=REPO_ROOT, env=env, check=True)
    print(f"run finished in {time.time() - start:.0f} s", flush=True)


def phase_medians(records: list[dict], switch_step: int) -> dict[str, dict[str, float]]:
    stages = {"stage 1": [r for r in records if 1 < r["step"] < switch_step],
              "stage 2": [r for r in records if r["step"] > switch_step]}
    out = {}
    for name, rows in stages.items():
        keys = sorted({k for r in rows for k in r if k.startswith("time/")})
        out[name] = {k: statistics.median(r.get(k, 0.0) for r in rows) for k in keys} | {"steps": float(len(rows))}
    return out


def inside_phases(profile_dir: Path, steps: list[int]) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """Mean seconds per step (over ``steps`` and ranks) of the :data:`INSIDE` functions, and the top own-time
    functions."""
    files = [p for s in steps for p in sorted(profile_dir.glob(f"step{s}-rank*.pstats"))]
    if not files:
        return {}, []
    stats = pstats.Stats(str(files[0]))
    for f in files[1:]:
        stats.add(str(f))
    per_step = 1.0 / len(files)
    table = stats.stats  # type: ignore[attr-defined]  # {(file, line, func): (cc, nc, tottime, cumtime, callers)}
    inside = {}
    for label, suffix, func in INSIDE:
        cum = [v[3] for (file, _, name), v in table.items() if name == func and file.endswith(suffix)]
        inside[label] = max(cum, default=0.0) * per_step  # max: a recursive entry is listed once per definition
    own = sorted(((f"{Path(file).parent.name}/{Path(file).name}:{name}", v[2] * per_step)
                  for (file, _, name), v in table.items()), key=lambda kv: -kv[1])[:15]
    return inside, own


def report(out: Path, switch_step: int, profile_steps: list[int]) -> dict:
    records = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines() if line]
    phases = phase_medians(records, switch_step)
    result = {"phases": phases, "inside": {}}
    lines = ["# SRPO step profile", "", "| phase (median s) | " + " | ".join(phases) + " |",
             "|---|" + "---|" * len(phases)]
    keys = sorted({k for p in phases.values() for k in p})
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(f"{phases[s].get(k, 0.0):.3f}" for s in phases) + " |")
    for stage, steps in (("stage 1", [s for s in profile_steps if s < switch_step]),
                         ("stage 2", [s for s in profile_steps if s >= switch_step])):
        inside, own = inside_phases(out / "run" / "profile", steps)
        if not inside:
            continue
        result["inside"][stage] = {"steps": steps, "cumulative_s": inside, "top_own_s": own}
        lines += ["", f"## {stage}: inside the phases (cProfile, steps {steps}, mean s per step and rank)", "",
                  "| function | s |", "|---|---|"]
        lines += [f"| {label} | {s:.3f} |" for label, s in inside.items()]
        lines += ["", "| top own time | s |", "|---|---|"] + [f"| `{name}` | {s:.3f} |" for name, s in own]
    text = "\n".join(lines) + "\n"
    (out / "step_profile.md").write_text(text)
    (out / "step_profile.json").write_text(json.dumps(result, indent=1))
    print(text)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    if not args.report_only:
        run(args, out)
    report(out, args.switch_step, [int(s) for s in args.profile_steps.split(",") if s])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
