"""Sampler comparison: GRPO (every group kept), DAPO dynamic sampling and SRPO's History Resampling, with the real
trainer, the same base model, seeds and number of optimizer updates.

    python -m benchmarks.samplers --out runs/samplers            # 6 runs of ~5-8 min each on 2 busy CPU cores
    python -m benchmarks.samplers --out runs/samplers --steps 2 --seeds 1 --eval-interval 1   # a smoke run

Task: the quickstart's math domain (``a+b=`` answered ``\\boxed{sum}``), ``--train-prompts`` training prompts (a few
hundred, so an epoch lasts ``train-prompts / prompts-per-step`` steps and History Resampling acts many times) and
128 held-out sums never seen in pretraining. The base is the quickstart model pretrained for ``--pretrain-steps``
steps (written to ``OUT/base`` once; ``--base runs/quickstart/base`` reuses the quickstart's, the same 400-step
pretraining): held-out pass@1 ~0.6 at temperature 1, well below saturation, with groups of every kind (all
correct, mixed, all wrong). A 250-step base is at 8% greedy accuracy: nearly every group is all wrong there, and
History Resampling (which drops only all-correct prompts) has nothing to do.

Each (sampler, seed) is one ``pretrain_srpo.py --nproc 2 --config configs/quickstart.yaml`` run (the config's
layout: Megatron data parallel + one vLLM-CPU engine per rank; math only, ``sampling.strategy`` = vanilla / dynamic /
history_resampling, ``train.seed`` = seed) in ``OUT/runs/<sampler>-seed<seed>``; a finished run is reused when the
command is repeated. From each run's ``metrics.jsonl`` it writes:

* ``OUT/samplers.png``: held-out pass@1 against optimizer step and against rollouts generated (training rollouts;
  the compute the samplers differ in), zero-advantage group fraction, informative groups per step, History
  Resampling's active prompt set, wall time;
* ``OUT/samplers.md`` and ``OUT/samplers.json``: per run and per sampler (mean over seeds) the figures below.

Metrics read (all logged by the trainer): ``eval/math_pass@1``, ``sampling/rollouts_generated``,
``advantage/zero_group_fraction``, ``advantage/informative_groups``, ``sampling/math/epoch``,
``sampling/math/epoch_prompts`` and ``sampling/math/history_resampling/*`` (one record per finished epoch).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from benchmarks.training_runs import REPO_ROOT, metrics_rows, run_env, train

SAMPLERS = {"vanilla": "GRPO (keep all)", "dynamic": "DAPO dynamic sampling", "history_resampling": "History Resampling"}
COLORS = {"vanilla": "tab:gray", "dynamic": "tab:blue", "history_resampling": "tab:red"}
HR = "sampling/math/history_resampling/"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/samplers", help="output directory (runs, data, base, figure, tables)")
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--steps", type=int, default=30, help="optimizer updates per run (one per step)")
    ap.add_argument("--prompts-per-step", type=int, default=16)
    ap.add_argument("--samples-per-prompt", type=int, default=8)
    ap.add_argument("--train-prompts", type=int, default=160, help="training prompts (one epoch = this / per step)")
    ap.add_argument("--eval-interval", type=int, default=10, help="held-out pass@1 every N steps (and at step 0)")
    ap.add_argument("--eval-samples", type=int, default=4, help="samples per held-out problem for pass@1")
    ap.add_argument("--heldout", type=int, default=128, help="held-out problems")
    ap.add_argument("--base", help="pretrained HF model directory (default: OUT/base, pretrained once if absent)")
    ap.add_argument("--pretrain-steps", type=int, default=400, help="pretraining steps when OUT/base is written")
    ap.add_argument("--data", help="directory with train.jsonl and heldout.jsonl (default: OUT/data, written once)")
    ap.add_argument("--max-response-length", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run before it is killed")
    ap.add_argument("--report-only", action="store_true",
                    help="no training: write the figure and tables from the runs of OUT/runs that finished")
    ap.add_argument("overrides", nargs="*", help="extra config overrides passed to every run, e.g. rollout.temperature=1")
    return ap.parse_args(argv)


# ------------------------------------------------------------------------------------------------ inputs


def prepare_data(args, out: Path) -> dict[str, Path]:
    data = Path(args.data) if args.data else out / "data"
    files = {"train": data / "train.jsonl", "heldout": data / "heldout.jsonl"}
    if not args.data and not files["heldout"].is_file():
        from srpo_mcore.quickstart.arithmetic import write_datasets

        # held-out seed 999 as in pretraining, which leaves these sums out of its corpus
        write_datasets(data, args.train_prompts, args.heldout, seed=5, held_out_seed=999)
    for name, path in files.items():
        if not path.is_file():
            raise SystemExit(f"error: {path} not found (the {name} file of --data)")
    return files


def prepare_base(args, out: Path) -> Path:
    if args.base:
        base = Path(args.base)
        if not (base / "config.json").is_file():
            raise SystemExit(f"error: --base {base} holds no HF checkpoint (config.json)")
        return base
    base = out / "base"
    if not (base / "pretrain_summary.json").is_file():
        from srpo_mcore.distributed import torchrun_argv

        print(f"== pretraining the base model ({args.pretrain_steps} steps) -> {base}", flush=True)
        from srpo_mcore.distributed import free_local_port

        cmd = torchrun_argv("srpo_mcore.quickstart.pretrain", ["--config", args.config, "--out", str(base),
                                                                "--steps", str(args.pretrain_steps), "--tp", "2"], 2,
                            free_local_port())
        subprocess.run(cmd, cwd=REPO_ROOT, env=run_env(), check=True)
    return base


# ------------------------------------------------------------------------------------------------ runs


def run_overrides(args, sampler: str, seed: int, run_dir: Path, base: Path, files: dict[str, Path]) -> list[str]:
    return [f"train.run_dir={run_dir}", f"train.init_checkpoint={base}", f"data.math_train_files=[{files['train']}]",
            "data.code_train_files=[]", f"data.eval_files=[{files['heldout']}]", "stages.two_stage=false",
            f"sampling.strategy={sampler}", f"train.seed={seed}", f"train.steps={args.steps}",
            f"train.prompts_per_step={args.prompts_per_step}", f"train.samples_per_prompt={args.samples_per_prompt}",
            f"train.eval_interval={args.eval_interval}", f"train.eval_samples_per_prompt={args.eval_samples}",
            f"rollout.max_response_length={args.max_response_length}", f"optimizer.lr={args.lr}",
            "train.save_interval=0", "train.keep_last_checkpoints=1", "train.export_hf_at_end=false",
            "logging.progress_bar=false", "logging.tensorboard=false", *args.overrides]


def run_one(args, sampler: str, seed: int, base: Path, files: dict[str, Path], runs: Path) -> Path:
    """One training run; reused when its ``wall_time.json`` says it finished with these settings."""
    run_dir = runs / f"{sampler}-seed{seed}"
    return train(run_dir, args.config, run_overrides(args, sampler, seed, run_dir, base, files),
                 label=f"{sampler} seed {seed}, {args.steps} steps", timeout=args.timeout)


# ------------------------------------------------------------------------------------------------ reading a run


def summarize_run(run_dir: Path, sampler: str, seed: int) -> dict:
    """The comparison's figures of one run, from its ``metrics.jsonl`` and ``wall_time.json``."""
    rows = metrics_rows(run_dir)
    steps = [r for r in rows if r["step"] > 0 and "sampling/rollouts_generated" in r]
    cumulative, total = {0: 0}, 0
    for r in steps:
        total += r["sampling/rollouts_generated"]
        cumulative[r["step"]] = total
    evals = [(r["step"], cumulative.get(r["step"], 0), r["eval/math_pass@1"]) for r in rows if "eval/math_pass@1" in r]
    epochs = {}  # History Resampling: what each finished epoch decided (repeated on every step after it)
    for r in steps:
        if f"{HR}epoch" in r:
            epochs[int(r[f"{HR}epoch"])] = {"epoch": int(r[f"{HR}epoch"]), "prompts": int(r[f"{HR}num_prompts"]),
                                            "dropped": int(r[f"{HR}dropped_all_correct"]), "kept": int(r[f"{HR}kept"]),
                                            "reset": bool(r[f"{HR}reset_to_full_set"])}
    n = max(len(steps), 1)
    return {
        "sampler": sampler, "seed": seed, "steps": len(steps),
        "pass_at_1": [{"step": s, "rollouts": c, "pass@1": p} for s, c, p in evals],
        "pass_at_1_start": evals[0][2] if evals else None, "pass_at_1_end": evals[-1][2] if evals else None,
        "rollouts_generated": total,
        "zero_advantage_fraction_mean": sum(r["advantage/zero_group_fraction"] for r in steps) / n,
        "informative_groups_mean": sum(r["advantage/informative_groups"] for r in steps) / n,
        "groups_trained_mean": sum(r["sampling/math_groups_kept"] for r in steps) / n,
        "epochs_finished": int(steps[-1]["sampling/math/epoch"]) if steps else 0,
        "hr_epochs": [epochs[k] for k in sorted(epochs)],
        "per_step": [{"step": r["step"], "rollouts": cumulative[r["step"]],
                      "zero_advantage_fraction": r["advantage/zero_group_fraction"],
                      "informative_groups": r["advantage/informative_groups"],
                      "epoch_prompts": r["sampling/math/epoch_prompts"]} for r in steps],
        "train_time_s": sum(r.get("time/step_s", 0.0) for r in steps),
        "wall_s": json.loads((run_dir / "wall_time.json").read_text())["wall_s"],
    }


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def by_sampler(results: list[dict]) -> dict[str, dict]:
    out = {}
    for sampler in SAMPLERS:
        mine = [r for r in results if r["sampler"] == sampler]
        if mine:
            out[sampler] = {key: mean([r[key] for r in mine]) for key in (
                "pass_at_1_start", "pass_at_1_end", "rollouts_generated", "zero_advantage_fraction_mean",
                "informative_groups_mean", "groups_trained_mean", "epochs_finished", "train_time_s", "wall_s")}
            out[sampler]["seeds"] = [r["seed"] for r in mine]
    return out


# ------------------------------------------------------------------------------------------------ outputs


def markdown(results: list[dict], summary: dict[str, dict], args) -> str:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = [f"Sampler comparison: {args.steps} optimizer updates, {args.prompts_per_step} groups x "
             f"{args.samples_per_prompt} samples per update, {args.train_prompts} training prompts, held-out pass@1 "
             f"over {args.heldout} problems x {args.eval_samples} samples; seeds {', '.join(map(str, args.seeds))}.",
             "", "| sampler | seeds | pass@1 start | pass@1 end | rollouts generated | zero-adv. groups | informative "
             "groups / step | groups trained / step | epochs finished | time in steps (s) | wall (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for sampler, s in summary.items():
        lines.append(f"| {SAMPLERS[sampler]} (mean) | {len(s['seeds'])} | {f(s['pass_at_1_start'], '.3f')} | "
                     f"{f(s['pass_at_1_end'], '.3f')} | {s['rollouts_generated']:.0f} | "
                     f"{s['zero_advantage_fraction_mean']:.2f} | {s['informative_groups_mean']:.1f} | "
                     f"{s['groups_trained_mean']:.1f} | {s['epochs_finished']:.1f} | {s['train_time_s']:.0f} | "
                     f"{s['wall_s']:.0f} |")
    for r in results:
        lines.append(f"| {r['sampler']} seed {r['seed']} | 1 | {f(r['pass_at_1_start'], '.3f')} | "
                     f"{f(r['pass_at_1_end'], '.3f')} | {r['rollouts_generated']} | "
                     f"{r['zero_advantage_fraction_mean']:.2f} | {r['informative_groups_mean']:.1f} | "
                     f"{r['groups_trained_mean']:.1f} | {r['epochs_finished']} | {r['train_time_s']:.0f} | "
                     f"{r['wall_s']:.0f} |")
    hr = [r for r in results if r["hr_epochs"]]
    if hr:
        lines += ["", "History Resampling, per finished epoch: prompts in the epoch -> dropped (all rollouts correct) "
                  "-> prompts in the next epoch (`reset`: none was left, back to the full set)", ""]
        for r in hr:
            epochs = ", ".join(f"{e['prompts']} -{e['dropped']} -> {e['kept']}{' (reset)' if e['reset'] else ''}"
                               for e in r["hr_epochs"])
            lines.append(f"- seed {r['seed']}: {epochs}")
    lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], summary: dict[str, dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8), constrained_layout=True)
    styles = ["-", "--", ":", "-."]
    for r in results:
        color, style = COLORS[r["sampler"]], styles[sorted({x["seed"] for x in results}).index(r["seed"]) % 4]
        label = f"{r['sampler']} s{r['seed']}"
        evals, per_step = r["pass_at_1"], r["per_step"]
        axes[0, 0].plot([e["step"] for e in evals], [e["pass@1"] for e in evals], style, color=color, marker=".",
                        label=label)
        axes[0, 1].plot([e["rollouts"] for e in evals], [e["pass@1"] for e in evals], style, color=color,
                        marker=".", label=label)
        xs = [p["step"] for p in per_step]
        axes[0, 2].plot(xs, [p["zero_advantage_fraction"] for p in per_step], style, color=color, label=label)
        axes[1, 0].plot(xs, [p["informative_groups"] for p in per_step], style, color=color, label=label)
        axes[1, 1].plot(xs, [p["epoch_prompts"] for p in per_step], style, color=color, label=label)
    titles = [("held-out pass@1", "optimizer step"), ("held-out pass@1", "training rollouts generated"),
              ("zero-advantage group fraction", "optimizer step"), ("informative groups per step", "optimizer step"),
              ("prompts in the current epoch (HR: active set)", "optimizer step")]
    for ax, (title, xlabel) in zip(axes.flat, titles):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    names = list(summary)
    ax = axes[1, 2]
    ax.bar(names, [summary[n]["wall_s"] for n in names], color=[COLORS[n] for n in names], label="wall")
    ax.bar(names, [summary[n]["train_time_s"] for n in names], color="white", alpha=0.5, hatch="//",
           label="inside steps")
    ax.set_title("wall time per run (s, mean over seeds)")
    ax.legend(fontsize=7)
    fig.suptitle("GRPO vs DAPO dynamic sampling vs History Resampling (quickstart arithmetic, 2 CPU ranks)")
    path = out / "samplers.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = []
    if args.report_only:
        base = args.base or out / "base"
        for seed in args.seeds:
            for sampler in args.samplers:
                run_dir = out / "runs" / f"{sampler}-seed{seed}"
                if (run_dir / "wall_time.json").is_file():
                    results.append(summarize_run(run_dir, sampler, seed))
        if not results:
            raise SystemExit(f"error: no finished run in {out / 'runs'}")
        args.seeds = sorted({r["seed"] for r in results})
    else:
        files = prepare_data(args, out)
        base = prepare_base(args, out)
        for seed in args.seeds:  # seed-major: an interrupted comparison still holds every sampler of the first seed
            for sampler in args.samplers:
                run_dir = run_one(args, sampler, seed, base, files, out / "runs")
                results.append(summarize_run(run_dir, sampler, seed))
    summary = by_sampler(results)
    (out / "samplers.json").write_text(json.dumps({"settings": vars(args), "base": str(base), "by_sampler": summary,
                                                   "runs": results}, indent=1))
    table = markdown(results, summary, args)
    (out / "samplers.md").write_text(table)
    print(table)
    print(f"figure: {plot(results, summary, out)}; table: {out / 'samplers.md'}, {out / 'samplers.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
