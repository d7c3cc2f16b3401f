"""benchmarks/samplers.py: the GRPO / DAPO dynamic sampling / History Resampling comparison.

* its reading of a run's metrics.jsonl (cumulative rollouts, HR epochs once each, per-step means) against figures
  worked out by hand from a synthetic log;
* end to end, the command with one short real run (dynamic sampling; the trainer under torchrun with vLLM): every
  output is written, rollouts count every prompt drawn (kept or dropped), no equal-reward group is trained on.
"""

import json
import sys

import pytest

from benchmarks.samplers import by_sampler, summarize_run
from tests.torchrun import run_isolated

HR = "sampling/math/history_resampling/"


def step_row(step, rollouts, zero, informative, kept, epoch, epoch_prompts, hr=None):
    row = {"step": step, "sampling/rollouts_generated": rollouts, "advantage/zero_group_fraction": zero,
           "advantage/informative_groups": informative, "sampling/math_groups_kept": kept,
           "sampling/math/epoch": epoch, "sampling/math/epoch_prompts": epoch_prompts, "time/step_s": 2.0}
    if hr:
        row.update({f"{HR}{k}": v for k, v in hr.items()})
    return row


def test_summarize_run_reads_rollouts_epochs_and_means(tmp_path):
    e0 = {"epoch": 0, "num_prompts": 8, "kept": 5, "dropped_all_correct": 3, "reset_to_full_set": 0.0}
    e1 = {"epoch": 1, "num_prompts": 5, "kept": 0, "dropped_all_correct": 5, "reset_to_full_set": 1.0}
    rows = [{"step": 0, "eval/math_pass@1": 0.25},
            step_row(1, 32, 0.5, 2, 4, 0, 8),
            step_row(2, 32, 0.25, 3, 4, 0, 8),
            step_row(3, 40, 0.0, 4, 4, 1, 5, e0),
            step_row(4, 8, 0.0, 1, 1, 1, 5, e0) | {"eval/math_pass@1": 0.5},
            step_row(5, 32, 1.0, 0, 4, 2, 8, e1)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "wall_time.json").write_text(json.dumps({"wall_s": 60.0, "overrides": []}))
    run = summarize_run(tmp_path, "history_resampling", 7)
    assert run["steps"] == 5
    assert run["rollouts_generated"] == 32 + 32 + 40 + 8 + 32
    assert run["pass_at_1"] == [{"step": 0, "rollouts": 0, "pass@1": 0.25}, {"step": 4, "rollouts": 112, "pass@1": 0.5}]
    assert (run["pass_at_1_start"], run["pass_at_1_end"]) == (0.25, 0.5)
    assert run["zero_advantage_fraction_mean"] == pytest.approx((0.5 + 0.25 + 0 + 0 + 1) / 5)
    assert run["informative_groups_mean"] == pytest.approx((2 + 3 + 4 + 1 + 0) / 5)
    assert run["groups_trained_mean"] == pytest.approx(17 / 5)
    assert run["epochs_finished"] == 2
    assert run["hr_epochs"] == [{"epoch": 0, "prompts": 8, "dropped": 3, "kept": 5, "reset": False},
                                {"epoch": 1, "prompts": 5, "dropped": 5, "kept": 0, "reset": True}]
    assert [p["rollouts"] for p in run["per_step"]] == [32, 64, 104, 112, 144]
    assert run["train_time_s"] == 10.0 and run["wall_s"] == 60.0
    other = dict(run, seed=8, pass_at_1_end=0.7, wall_s=80.0)
    summary = by_sampler([run, other])
    assert summary["history_resampling"]["pass_at_1_end"] == pytest.approx(0.6)
    assert summary["history_resampling"]["wall_s"] == pytest.approx(70.0)
    assert summary["history_resampling"]["seeds"] == [7, 8] and "vanilla" not in summary


@pytest.mark.distributed
@pytest.mark.vllm
@pytest.mark.slow
def test_comparison_command_runs_dynamic_sampling_for_two_steps(arith_base, tmp_path):
    """One sampler only (each run starts torchrun + vLLM: ~1 min idle, ~4 min at load 100 on 2 cores); dynamic
    sampling, whose rollout accounting (over-sampling, dropped groups) is the one that differs from the others."""
    out = tmp_path / "cmp"
    steps, groups, samples = 2, 4, 4
    proc = run_isolated([sys.executable, "-m", "benchmarks.samplers", "--out", str(out), "--base",
                         str(arith_base["base"]), "--data", str(arith_base["train"].parent), "--seeds", "3",
                         "--samplers", "dynamic", "--steps", str(steps), "--prompts-per-step", str(groups),
                         "--samples-per-prompt", str(samples), "--eval-interval", "2", "--eval-samples", "1",
                         "--heldout", "16", "--max-response-length", "24"], timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    assert (out / "samplers.png").stat().st_size > 10_000
    assert "| dynamic seed 3 |" in (out / "samplers.md").read_text()
    report = json.loads((out / "samplers.json").read_text())
    (run,) = report["runs"]
    assert run["sampler"] == "dynamic" and set(report["by_sampler"]) == {"dynamic"}
    assert run["steps"] == steps and [e["step"] for e in run["pass_at_1"]] == [0, 2]
    assert all(0.0 <= e["pass@1"] <= 1.0 for e in run["pass_at_1"])
    rows = [json.loads(line) for line in (out / "runs" / "dynamic-seed3" / "metrics.jsonl").read_text().splitlines()]
    steps_rows = [r for r in rows if r["step"] > 0]
    # rollouts: every prompt drawn in any round, kept or dropped; at least ceil(4 x 1.5) = 6 prompts a step
    assert run["rollouts_generated"] == sum(r["sampling/math_prompts_drawn"] for r in steps_rows) * samples
    assert all(r["sampling/math_prompts_drawn"] >= 6 for r in steps_rows)
    # it trains only on groups with unequal rewards; informative groups are at most the groups kept
    assert all(r["advantage/equal_reward_group_fraction"] == 0.0 for r in steps_rows)
    assert all(r["advantage/informative_groups"] <= r["sampling/math_groups_kept"] <= groups for r in steps_rows)
