"""benchmarks/trl_side_by_side: our trainer vs TRL's GRPOTrainer. TRL itself is never installed here.

* the settings mapping against values read by hand from configs/quickstart.yaml, and its refusals;
* the report's statistics against the standard library's (statistics.quantiles for p90), pass@1 over seeds;
* the TRL venv's reuse rule; bad input as one line before anything starts;
* the prompt rows TRL gets tokenize (as TRL tokenizes them) to the ids our trainer generates from;
* end to end, our side only (2 steps, 1 evaluation seed): the report's numbers are the run's.
"""

import json
import statistics
import sys
from pathlib import Path

import pytest

from benchmarks.trl_side_by_side import cli, report, venv
from benchmarks.trl_side_by_side.settings import MappingError, settings_table, stage1_overrides, trl_arguments
from benchmarks.trl_side_by_side.trl_side import check_prompt_tokens
from srpo_mcore.config import load_config
from tests.torchrun import REPO_ROOT, run_isolated

QUICKSTART = REPO_ROOT / "configs" / "quickstart.yaml"


def stage1_config(*extra):
    overrides = stage1_overrides(data=Path("/d"), base=Path("/b"), run_dir=Path("/r"), steps=80, eval_every=40)
    return load_config(QUICKSTART, [*overrides, *extra])


def test_stage1_overrides_make_a_math_only_run_with_checkpoints_at_the_eval_steps():
    cfg = stage1_config()
    assert cfg.stages.two_stage is False and cfg.data.code_train_files == []
    assert cfg.data.math_train_files == ["/d/train.jsonl"] and cfg.train.init_checkpoint == "/b"
    assert (cfg.train.steps, cfg.train.save_interval, cfg.train.eval_interval) == (80, 40, 0)
    assert cfg.train.keep_last_checkpoints >= 2  # steps 40 and 80 both kept


def test_trl_arguments_are_the_quickstart_settings():
    """Expected values read by hand from configs/quickstart.yaml and the config defaults it leaves alone."""
    assert trl_arguments(stage1_config(), steps=80, eval_every=40) == {
        "max_steps": 80, "per_device_train_batch_size": 32 * 8, "gradient_accumulation_steps": 1,
        "num_generations": 8, "steps_per_generation": 1, "num_iterations": 1, "max_completion_length": 32,
        "temperature": 1.0, "top_p": 1.0, "top_k": 0, "learning_rate": 1e-4, "lr_scheduler_type": "constant",
        "warmup_steps": 0, "adam_beta1": 0.9, "adam_beta2": 0.95, "adam_epsilon": 1e-8, "weight_decay": 0.0,
        "max_grad_norm": 1.0, "optim": "adamw_torch", "beta": 0.0, "epsilon": 0.2, "epsilon_high": 0.2,
        "loss_type": "dapo", "scale_rewards": "group", "mask_truncated_completions": True, "seed": 1234,
        "save_strategy": "steps", "save_steps": 40, "save_only_model": True}


def test_trl_arguments_follow_overrides_and_the_table_shows_both_sides():
    cfg = stage1_config("optimizer.lr=3e-5", "train.prompts_per_step=16", "algorithm.clip_eps_high=0.28",
                        "algorithm.normalize_advantage_by_std=false", "algorithm.loss_aggregation=seq-mean-token-mean")
    trl = trl_arguments(cfg, steps=80, eval_every=40)
    assert (trl["learning_rate"], trl["per_device_train_batch_size"], trl["epsilon_high"]) == (3e-5, 128, 0.28)
    assert (trl["scale_rewards"], trl["loss_type"]) == ("none", "grpo")
    rows = {name: (ours, theirs) for name, ours, theirs in settings_table(cfg, trl, threads=2, nproc=2)}
    assert rows["batch per step"] == ("16 prompts x 8 samples", "16 prompts x num_generations=8")
    assert rows["lr schedule"] == ("3e-05 constant, warm-up 0", "3e-05 constant, warmup_steps=0")
    assert rows["processes x threads"][1] == "1 process x 2 threads"


@pytest.mark.parametrize("override, key", [
    ("algorithm.loss_aggregation=seq-mean-token-sum", "algorithm.loss_aggregation"),
    ("train.mini_batches_per_step=2", "train.mini_batches_per_step"),
    ("algorithm.dual_clip_c=3.0", "algorithm.dual_clip_c"),
    ("algorithm.entropy_coef=0.01", "algorithm.entropy_coef"),
])
def test_settings_without_a_trl_equivalent_are_refused(override, key):
    with pytest.raises(MappingError, match=key):
        trl_arguments(stage1_config(override), steps=80, eval_every=40)


def test_step_stats_leave_out_warmup_and_match_the_standard_library():
    seconds = [9.0, 0.5, 0.7, 0.4, 0.6, 1.1, 0.5, 0.8]
    rows = [{"step": i + 1, "time/step_s": s, "time/rollout_s": s / 2, "other": 1} for i, s in enumerate(seconds)]
    rows.insert(0, {"step": 0, "eval/math_pass@1": 0.5})  # an evaluation-only record: no time
    stats = report.step_stats(rows, warmup_steps=1)
    timed = seconds[1:]
    assert (stats["steps_timed"], stats["first_timed_step"], stats["last_step"]) == (7, 2, 8)
    assert stats["median_s"] == statistics.median(timed) and stats["mean_s"] == pytest.approx(statistics.fmean(timed))
    assert stats["p90_s"] == pytest.approx(statistics.quantiles(timed, n=10, method="inclusive")[8])
    assert stats["phase_medians_s"] == {"rollout": statistics.median(s / 2 for s in timed)}
    with pytest.raises(ValueError, match="no timed steps"):
        report.step_stats(rows[:2], warmup_steps=1)


def write_summary(path: Path, pass1: float, pending=()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmarks": {"heldout": {"pass@1": pass1}}, "pending": list(pending)}))
    return path


def test_pass_at_1_is_mean_and_sample_std_over_seeds(tmp_path):
    files = [write_summary(tmp_path / f"s{i}" / "summary.json", v) for i, v in enumerate([0.5, 0.625, 0.75])]
    p = report.pass_at_1(files)
    assert (p["seeds"], p["per_seed"]) == (3, [0.5, 0.625, 0.75])
    assert p["mean"] == pytest.approx(0.625) and p["std"] == pytest.approx(0.125)
    assert report.pass_at_1(files[:1])["std"] == 0.0
    with pytest.raises(ValueError, match="unfinished"):
        report.pass_at_1([write_summary(tmp_path / "p" / "summary.json", 0.5, pending=["heldout"])])


def test_venv_is_reused_only_when_built_from_the_current_pins(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text("")
    assert not venv.is_current(tmp_path)  # no stamp: an unfinished or foreign venv
    (tmp_path / venv.STAMP).write_text("other pins\n")
    assert not venv.is_current(tmp_path)
    (tmp_path / venv.STAMP).write_text(venv.wanted_stamp() + "\n")
    assert venv.is_current(tmp_path)


def test_requirements_pin_every_package_exactly():
    lines = [line for line in venv.REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in lines) and any(line.startswith("trl==") for line in lines)
    ours = dict(line.split("==") for line in (REPO_ROOT / "requirements" / "cpu-lock.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    theirs = dict(line.split("==") for line in lines)
    for name in ("transformers", "tokenizers", "math-verify", "latex2sympy2_extended", "sympy"):
        assert theirs[name] == ours[name], name  # the reward and the model code as in our environment
    assert "torch" not in theirs  # installed first from the on-disk CPU wheel (venv.FIRST)


def fake_inputs(tmp_path: Path) -> list[str]:
    """A base and data directory that pass the pre-flight checks (enough for --report-only)."""
    base, data = tmp_path / "base", tmp_path / "data"
    base.mkdir()
    data.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (base / name).write_text("{}")
    for name in ("train.jsonl", "heldout.jsonl"):
        (data / name).write_text("")
    return ["--base", str(base), "--data", str(data), "--config", str(QUICKSTART)]


def test_report_only_tables_both_sides_from_their_files(tmp_path):
    out = tmp_path / "out"
    ours = [{"step": s, "time/step_s": t, "time/rollout_s": t / 4, "time/train_s": t / 2}
            for s, t in enumerate([5.0, 0.4, 0.6, 0.5, 0.3], start=1)]
    trl = [{"step": s, "time/step_s": t, "time/generate_s": t / 3, "time/train_s": t / 2}
           for s, t in enumerate([9.0, 0.8, 0.7, 0.9, 0.6], start=1)]
    (out / "ours" / "run").mkdir(parents=True)
    (out / "trl").mkdir()
    (out / "ours" / "run" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ours))
    (out / "trl" / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in trl))
    figures = {("base", 0): [0.5, 0.6], ("ours", 5): [0.7, 0.8], ("trl", 5): [0.65, 0.75]}
    for (kind, step), values in figures.items():
        for seed, value in enumerate(values, start=1):
            write_summary(cli.eval_dir(out, kind, step, seed) / "summary.json", value)
    rc = cli.main(["--out", str(out), *fake_inputs(tmp_path), "--steps", "5", "--eval-every", "5",
                   "--eval-seeds", "2", "--report-only"])
    assert rc == 0
    result = json.loads((out / "side_by_side.json").read_text())
    assert result["steps"]["ours"]["median_s"] == statistics.median([0.4, 0.6, 0.5, 0.3])
    assert result["steps"]["trl"]["median_s"] == statistics.median([0.8, 0.7, 0.9, 0.6])
    assert result["steps"]["trl"]["phase_medians_s"]["generate"] == pytest.approx(0.75 / 3)
    assert result["pass@1"]["ours"]["0"] == result["pass@1"]["trl"]["0"]  # the shared base
    assert result["pass@1"]["trl"]["5"]["mean"] == pytest.approx(0.7)
    text = (out / "side_by_side.md").read_text()
    assert "| median s/step | 0.450 | 0.750 |" in text
    assert "| held-out pass@1, step 5 | 0.750 ± 0.071 (n=2) | 0.700 ± 0.071 (n=2) |" in text
    assert "| median rollout s | 0.113 | - |" in text


def test_a_side_run_starts_clean_and_leaves_the_other_sides_results(tmp_path):
    kept = [tmp_path / "trl" / "steps.jsonl", tmp_path / "eval" / "trl" / "step2" / "seed1" / "summary.json"]
    cleared = [tmp_path / "ours" / "run" / "checkpoints" / "step_000002" / "x",
               tmp_path / "eval" / "ours" / "step2" / "seed1" / "summary.json",
               tmp_path / "eval" / "base" / "step0" / "seed1" / "summary.json"]
    for path in kept + cleared:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    cli.clear_previous(tmp_path, ["ours"])  # our trainer would resume from the stale checkpoint
    assert all(p.exists() for p in kept) and not any(p.exists() for p in cleared)


@pytest.mark.parametrize("argv, message", [
    (["--base", "/nonexistent"], "--base /nonexistent: not an HF model directory"),
    (["--data", "/nonexistent"], "--data /nonexistent: train.jsonl missing"),
    (["--steps", "50"], "--steps 50 must be a positive multiple of --eval-every 40"),
    (["--sides", "ours,verl"], "--sides ours,verl: expected some of ours,trl"),
])
def test_bad_input_is_one_line_before_anything_starts(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["--out", str(out), *fake_inputs(tmp_path), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_prompt_rows_tokenize_as_trl_does_to_our_ids(arith_base, tmp_path):
    """TRL tokenizes the prompt text with ``tokenizer(text=...)``: the rows must give exactly our prompt ids (BOS
    included, which our trainer adds and the tokenizer does not)."""
    from transformers import AutoTokenizer

    cfg = load_config(QUICKSTART, stage1_overrides(data=arith_base["train"].parent, base=arith_base["base"],
                                                   run_dir=tmp_path / "run", steps=2, eval_every=2))
    n = cli.write_prompts(cfg, arith_base["base"], tmp_path / "prompts.jsonl")
    rows = report.read_jsonl(tmp_path / "prompts.jsonl")
    assert n == len(rows) > 0
    tokenizer = AutoTokenizer.from_pretrained(str(arith_base["base"]))
    check_prompt_tokens(tokenizer, rows)  # raises SystemExit on a mismatch
    assert all(r["prompt_ids"][0] == tokenizer.bos_token_id for r in rows)
    with pytest.raises(SystemExit, match="differs from ours"):
        check_prompt_tokens(tokenizer, [dict(rows[0], prompt=rows[0]["prompt"].removeprefix(tokenizer.bos_token))])


@pytest.mark.distributed
@pytest.mark.vllm
@pytest.mark.slow
def test_our_side_end_to_end_report_numbers_come_from_the_run(arith_base, tmp_path):
    """Our side only (TRL is never installed by the suite): 2 steps, evaluation at 0 and 2, one seed."""
    out = tmp_path / "bench"
    proc = run_isolated([sys.executable, "-m", "benchmarks.trl_side_by_side", "--out", str(out), "--base",
                         str(arith_base["base"]), "--data", str(arith_base["train"].parent), "--sides", "ours",
                         "--steps", "2", "--eval-every", "2", "--eval-seeds", "1", "--eval-k", "1",
                         "train.prompts_per_step=4", "train.samples_per_prompt=4"], timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    result = json.loads((out / "side_by_side.json").read_text())
    assert set(result["steps"]) == {"ours"} and result["eval_steps"] == [0, 2]
    metrics = [r for r in report.read_jsonl(out / "ours" / "run" / "metrics.jsonl") if "time/step_s" in r]
    assert [r["step"] for r in metrics] == [1, 2]
    ours = result["steps"]["ours"]
    assert ours["steps_timed"] == 1 and ours["median_s"] == metrics[1]["time/iteration_s"]  # wall, as TRL's
    assert metrics[1]["time/step_s"] <= metrics[1]["time/iteration_s"] < metrics[1]["time/step_s"] + 1.0
    assert ours["phase_medians_s"]["phases"] == metrics[1]["time/step_s"]
    assert ours["phase_medians_s"]["rollout"] == metrics[1]["time/rollout_s"]
    for step, kind in ((0, "base"), (2, "ours")):
        summary = json.loads((out / "eval" / kind / f"step{step}" / "seed1" / "summary.json").read_text())
        (bench,) = summary["benchmarks"].values()
        assert result["pass@1"]["ours"][str(step)]["per_seed"] == [bench["pass@1"]]
    assert (out / "ours" / "run" / "checkpoints" / "step_000002").is_dir()
    text = (out / "side_by_side.md").read_text()
    assert "| median s/step |" in text and "| loss aggregation | token-mean | loss_type=dapo |" in text
