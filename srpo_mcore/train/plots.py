"""Render a run's curves to PNG: ``python -m srpo_mcore.train.plots RUN_DIR [--out FILE]``.

Reads ``RUN_DIR/metrics.jsonl`` and draws reward and accuracy, response length, the zero-advantage fraction and
informative groups per step, the sampler's prompt set (under History Resampling: the active set, which shrinks as
solved prompts are dropped, and the prompts dropped at the last epoch end), and the reflection-pattern
frequencies, one panel each, against the step.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PANELS = [
    ("reward / accuracy", ["reward/mean", "accuracy/mean", "eval/accuracy"]),
    ("response length (tokens)", ["response/length_mean"]),
    ("zero-advantage group fraction", ["advantage/zero_group_fraction"]),
    ("groups per step", ["sampling/math_groups_kept", "sampling/code_groups_kept", "advantage/informative_groups"]),
    ("prompts in the epoch (History Resampling: active set)", ["sampling/math/epoch_prompts",
                                                               "sampling/code/epoch_prompts"]),
    ("History Resampling: prompts dropped at the last epoch end",
     ["sampling/math/history_resampling/dropped_all_correct", "sampling/code/history_resampling/dropped_all_correct"]),
    ("reflection frequency", ["reflection/recheck_frequency", "reflection/hesitation_frequency",
                              "reflection/exploration_frequency"]),
]


def load_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics to plot")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def render(run_dir: str | Path, out: str | Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = load_metrics(run_dir)
    out = Path(out) if out else run_dir / "curves.png"
    fig, axes = plt.subplots(2, 4, figsize=(20, 7), constrained_layout=True)
    for ax, (title, keys) in zip(axes.flat, PANELS):
        for key in keys:
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="." if len(points) < 40 else None, label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    for ax in axes.flat[len(PANELS):]:
        ax.set_axis_off()
    fig.suptitle(f"SRPO run: {run_dir}")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--out", help="PNG path (default RUN_DIR/curves.png)")
    args = ap.parse_args(argv)
    try:
        print(render(args.run_dir, args.out))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
