"""SRPO's two-stage schedule against one math + code mixture from the first step (the paper's staged-vs-mixed
ablation), with the real trainer on the quickstart's task.

    python -m benchmarks.stages --out runs/stages --base runs/quickstart/base --data runs/quickstart/data
    python -m benchmarks.stages --out runs/stages --report-only        # rewrite the tables from finished runs

Arms, each ``pretrain_srpo.py --nproc 2 --config configs/quickstart.yaml`` from the same base model, prompts,
held-out sets, seeds and number of steps (``--steps``, 160: 32 prompts x 8 samples per step):

* ``staged`` (SRPO): math only until ``--switch-step`` - 1, then half math, half code (``stages.two_stage=true``);
* ``mixed``: half math, half code from step 1 (``stages.two_stage=false``).

The quickstart's data (``make quickstart`` writes ``runs/quickstart/{base,data}``): ``a+b`` answered as a boxed
number (math) or as a Python program printing it (code, run in the sandbox), 128 held-out problems per domain.
Held-out pass@1 per domain (``train.eval_samples_per_prompt`` samples per problem) every ``--eval-interval``
steps; per run and per arm (mean over seeds) the first and last of them, the mean training response length per
domain mix, and the wall time. Writes ``OUT/stages.md`` and ``OUT/stages.json``; finished runs are reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.training_runs import metrics_rows, train

ARMS = {"staged": "SRPO two-stage (math, then math + code)", "mixed": "math + code from step 1"}
DOMAINS = ("math", "code")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/stages", help="output directory (runs, tables)")
    ap.add_argument("--base", help="pretrained HF model directory (make quickstart: runs/quickstart/base)")
    ap.add_argument("--data", help="directory with train.jsonl, code_train.jsonl, heldout.jsonl, code_heldout.jsonl")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--steps", type=int, default=160)
    ap.add_argument("--switch-step", type=int, default=81, help="the staged arm's first stage-2 step")
    ap.add_argument("--eval-interval", type=int, default=40)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run before it is killed")
    ap.add_argument("--report-only", action="store_true", help="no training: tables from the finished runs")
    ap.add_argument("overrides", nargs="*", help="extra config overrides for every run")
    args = ap.parse_args(argv)
    if not args.report_only and not (args.base and args.data):
        ap.error("--base and --data are needed to train (make quickstart writes runs/quickstart/{base,data})")
    if not 1 < args.switch_step <= args.steps:
        ap.error(f"--switch-step {args.switch_step} must be in (1, --steps={args.steps}]")
    return args


def input_files(data: Path) -> dict[str, Path]:
    files = {name: data / f"{name}.jsonl" for name in ("train", "code_train", "heldout", "code_heldout")}
    for name, path in files.items():
        if not path.is_file():
            raise SystemExit(f"error: {path} not found (the {name} file of --data)")
    return files


def arm_overrides(args, arm: str, seed: int, run_dir: Path, base: Path, files: dict[str, Path]) -> list[str]:
    """Every run's settings; the arms differ only in the stage schedule."""
    stage = (["stages.two_stage=true", f"stages.switch_step={args.switch_step}"] if arm == "staged"
             else ["stages.two_stage=false"])
    return [f"train.run_dir={run_dir}", f"train.init_checkpoint={base}",
            f"data.math_train_files=[{files['train']}]", f"data.code_train_files=[{files['code_train']}]",
            f"data.eval_files=[{files['heldout']},{files['code_heldout']}]", *stage, f"train.seed={seed}",
            f"train.steps={args.steps}", f"train.eval_interval={args.eval_interval}", "train.save_interval=0",
            "train.keep_last_checkpoints=1", "train.export_hf_at_end=false", "logging.progress_bar=false",
            "logging.tensorboard=false", *args.overrides]


def summarize_run(run_dir: Path, arm: str, seed: int) -> dict:
    """Held-out pass@1 per domain at every evaluation, the training response length in steps with and without
    code, and the wall time, from the run's metrics.jsonl and wall_time.json."""
    rows = metrics_rows(run_dir)
    evals = [{"step": r["step"], **{d: r[f"eval/{d}_pass@1"] for d in DOMAINS}} for r in rows
             if all(f"eval/{d}_pass@1" in r for d in DOMAINS)]
    steps = [r for r in rows if r["step"] > 0 and "response/length_mean" in r]

    def mean_length(with_code: bool) -> float | None:
        lengths = [r["response/length_mean"] for r in steps if ("accuracy/code_mean" in r) == with_code]
        return sum(lengths) / len(lengths) if lengths else None

    return {"arm": arm, "seed": seed, "steps": len(steps), "evals": evals,
            "start": evals[0] if evals else None, "end": evals[-1] if evals else None,
            "length_math_only_steps": mean_length(False), "length_math_code_steps": mean_length(True),
            "wall_s": json.loads((run_dir / "wall_time.json").read_text())["wall_s"]}


def by_arm(results: list[dict]) -> dict[str, dict]:
    out = {}
    for arm in ARMS:
        mine = [r for r in results if r["arm"] == arm and r["end"] is not None]
        if mine:
            out[arm] = {f"end_{d}": sum(r["end"][d] for r in mine) / len(mine) for d in DOMAINS}
            out[arm]["end_mean"] = (out[arm]["end_math"] + out[arm]["end_code"]) / 2
            out[arm]["seeds"] = [r["seed"] for r in mine]
            out[arm]["wall_s"] = sum(r["wall_s"] for r in mine) / len(mine)
    return out


def markdown(results: list[dict], summary: dict[str, dict], args) -> str:
    def f(v):
        return "-" if v is None else f"{v:.3f}"

    lines = [f"Staged vs mixed: {args.steps} steps, stage 2 from step {args.switch_step} in the staged arm; held-out "
             f"pass@1 per domain; seeds {', '.join(map(str, args.seeds))}.", "",
             "| arm | seeds | math pass@1 end | code pass@1 end | mean of both | wall (s) |", "|---|---|---|---|---|---|"]
    for arm, s in summary.items():
        lines.append(f"| {ARMS[arm]} (mean) | {len(s['seeds'])} | {f(s['end_math'])} | {f(s['end_code'])} | "
                     f"{f(s['end_mean'])} | {s['wall_s']:.0f} |")
    lines += ["", "| run | math pass@1 at each evaluation | code pass@1 at each evaluation | response length, "
              "math-only / math+code steps |", "|---|---|---|---|"]
    for r in results:
        curve = {d: " ".join(f"{e[d]:.3f}" for e in r["evals"]) for d in DOMAINS}
        lines.append(f"| {r['arm']} seed {r['seed']} | {curve['math']} | {curve['code']} | "
                     f"{f(r['length_math_only_steps'])} / {f(r['length_math_code_steps'])} |")
    return "\n".join(lines + [""])


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = []
    files = None if args.report_only else input_files(Path(args.data).resolve())
    for seed in args.seeds:  # seed-major: an interrupted comparison still holds both arms of the first seed
        for arm in args.arms:
            run_dir = out / "runs" / f"{arm}-seed{seed}"
            if args.report_only:
                if (run_dir / "wall_time.json").is_file():
                    results.append(summarize_run(run_dir, arm, seed))
                continue
            assert files is not None
            overrides = arm_overrides(args, arm, seed, run_dir, Path(args.base).resolve(), files)
            train(run_dir, args.config, overrides, label=f"{arm} seed {seed}, {args.steps} steps",
                  timeout=args.timeout)
            results.append(summarize_run(run_dir, arm, seed))
    if not results:
        raise SystemExit(f"error: no finished run in {out / 'runs'}")
    summary = by_arm(results)
    (out / "stages.json").write_text(json.dumps({"settings": vars(args), "by_arm": summary, "runs": results},
                                                indent=1))
    table = markdown(results, summary, args)
    (out / "stages.md").write_text(table)
    print(table)
    print(f"tables: {out / 'stages.md'}, {out / 'stages.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
