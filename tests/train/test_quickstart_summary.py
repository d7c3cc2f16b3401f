"""The quickstart's History Resampling read-outs: the console summary (srpo_mcore/quickstart/summary.py) lists every
finished epoch once per domain, in order, from the trainer's repeated per-step records; the curves have the HR panels."""

import json

from srpo_mcore.quickstart.summary import history_resampling_epochs, summary_lines
from srpo_mcore.train.plots import PANELS, render

P = "sampling/math/history_resampling/"


def hr(epoch, prompts, dropped, reset=0.0):
    return {f"{P}epoch": epoch, f"{P}num_prompts": prompts, f"{P}dropped_all_correct": dropped,
            f"{P}kept": prompts - dropped if not reset else 0, f"{P}reset_to_full_set": reset}


def rows():
    out = [{"step": 0, "eval/math_pass@1": 0.5, "eval/accuracy": 0.5}]
    for step in range(1, 25):
        row = {"step": step, "advantage/zero_group_fraction": 0.1 if step <= 2 else 0.4, "time/rollout_s": 1.0,
               "sampling/math/epoch_prompts": 10.0 if step < 5 else 6.0, "sampling/math_groups_kept": 4}
        if step >= 5:
            row.update(hr(0, 10, 4))
        if step >= 9:
            row.update(hr(1, 6, 6, reset=1.0))
        out.append(row)
    out[-1].update({"eval/math_pass@1": 0.75, "eval/accuracy": 0.75})
    return out


def test_epochs_are_listed_once_each_in_order():
    epochs = history_resampling_epochs(rows(), "math")
    assert [(e["epoch"], e["num_prompts"], e["dropped_all_correct"], e["kept"]) for e in epochs] == [
        (0, 10, 4, 6), (1, 6, 6, 0)]
    assert history_resampling_epochs(rows(), "code") == []


def test_summary_prints_pass_at_1_change_and_hr_epochs():
    text = "\n".join(summary_lines(rows()))
    assert "math_pass@1   step 0: 0.500  step 24: 0.750  (change +25.0 points)" in text
    assert "History Resampling, math (2 epoch ends)" in text
    assert "10 -4 -> 6, 6 -6 -> 0 (reset to all)" in text
    assert "History Resampling, code" not in text
    assert "zero-advantage group fraction: 0.10 over the first 2 steps, 0.40 over the last 2" in text
    assert "rollout 24" in text


def test_curves_have_the_history_resampling_panels(tmp_path):
    keys = {k for _, ks in PANELS for k in ks}
    assert {"sampling/math/epoch_prompts", f"{P}dropped_all_correct", "advantage/informative_groups"} <= keys
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows()))
    assert render(tmp_path).stat().st_size > 10_000
