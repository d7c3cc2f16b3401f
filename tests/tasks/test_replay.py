"""Rollout replay files: a round trip keeps every field the update reads bit for bit, and a replay directory that
cannot serve the config is refused before any rank starts, one line naming the file and the field.

The end-to-end check (a recorded TP2 run replayed without vLLM gives the same losses and weights bit for bit) is in
tests/train/test_trainer.py, which reuses that file's recorded run."""

import json

import pytest
import torch

from srpo_mcore.algorithm.sampling import GroupOutcome, build_prompt_sampler
from srpo_mcore.config import SRPOConfig, load_config
from srpo_mcore.tasks.replay import INDEX, RolloutRecorder, RolloutReplay, replay_problems, step_file
from srpo_mcore.tasks.scoring import ScoredSample
from tests.tasks.test_training_inputs import load_entry_point
from tests.torchrun import REPO_ROOT


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory):
    """An HF directory as far as the entry point's checks go: the quickstart's character tokenizer, a config.json
    and a weights file name (the checks never read the weights)."""
    from srpo_mcore.quickstart.arithmetic import build_tokenizer

    root = tmp_path_factory.mktemp("init")
    build_tokenizer(root)
    (root / "config.json").write_text("{}")
    (root / "model.safetensors").write_text("")
    return root


def config(tmp_path, init_dir, *overrides) -> SRPOConfig:
    data = tmp_path / "train.jsonl"
    data.touch()
    return load_config(REPO_ROOT / "configs/quickstart.yaml", [
        f"train.init_checkpoint={init_dir}", f"data.math_train_files=[{data}]", f"data.code_train_files=[{data}]",
        f"data.eval_files=[{data}]", f"train.run_dir={tmp_path / 'run'}", "train.samples_per_prompt=2", *overrides])


def samples(seed: int) -> list[ScoredSample]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(4):
        n = 3 + i
        out.append(ScoredSample(
            group=i // 2, prompt_id=f"p{i // 2}", domain=("math", "code")[i % 2],
            prompt_ids=torch.randint(0, 89, (5,), generator=g).tolist(),
            response_ids=torch.randint(0, 89, (n,), generator=g, dtype=torch.int32),
            rollout_logprobs=-torch.rand(n, generator=g), finish_reason=("stop", "length")[i % 2],
            reward=float(torch.rand(1, generator=g, dtype=torch.float64)), accuracy=float(i % 2),
            response_text=f"text {i}", format_ok=bool(i % 3), language_penalty=0.25 * i,
            status=("ok", "wrong_answer", None)[i % 3]))
    return out


def record(cfg, directory, steps):
    from transformers import AutoTokenizer

    recorder = RolloutRecorder(directory, cfg, AutoTokenizer.from_pretrained(cfg.train.init_checkpoint),
                               is_writer=True)
    for step in steps:
        recorder.save(step, samples(step), {"sampling/math_groups_kept": float(step)}, {})
    return directory


def test_round_trip_keeps_every_field_and_the_sampler_state(tmp_path, init_dir):
    cfg = config(tmp_path, init_dir)
    from transformers import AutoTokenizer

    recorder = RolloutRecorder(tmp_path / "rollouts", cfg, AutoTokenizer.from_pretrained(str(init_dir)),
                               is_writer=True)
    sampler = build_prompt_sampler(cfg.sampling, list(range(10)), seed=3)
    batch = sampler.begin_batch(2)
    ids = batch.next_request()
    batch.add([GroupOutcome(i, (1.0, 0.0), (True, False)) for i in ids])
    original = samples(7)
    recorder.save(1, original, {"sampling/math_groups_kept": 2.0}, {"math": sampler.state_dict()})
    assert not list((tmp_path / "rollouts").glob(".*tmp*"))  # written under a temporary name, then renamed
    fresh = build_prompt_sampler(cfg.sampling, list(range(10)), seed=3)
    replayed, metrics = RolloutReplay(tmp_path / "rollouts").load_step(1, {"math": fresh})
    assert metrics == {"sampling/math_groups_kept": 2.0}
    assert fresh.state_dict() == sampler.state_dict()
    assert len(replayed) == len(original)
    for a, b in zip(original, replayed):
        fields = ("group", "prompt_id", "domain", "finish_reason", "response_text", "format_ok", "language_penalty",
                  "status")
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
        assert list(a.prompt_ids) == list(b.prompt_ids)
        assert a.reward == b.reward and a.accuracy == b.accuracy  # float64 on disk: the exact Python floats
        assert torch.equal(torch.as_tensor(a.response_ids), b.response_ids)
        assert torch.equal(torch.as_tensor(a.rollout_logprobs), b.rollout_logprobs)
    # a run directory stands for its rollouts/ folder
    index = json.loads((tmp_path / "rollouts" / INDEX).read_text())
    assert index["steps"] == [1] and index["samples_per_prompt"] == 2 and index["model"]["hidden_size"] == 128
    assert RolloutReplay(tmp_path).directory == tmp_path / "rollouts"


def test_format_1_files_still_load(tmp_path, init_dir):
    """Format 1 kept the rewards' verdicts in one ``extras`` dict per sample (with the sampler id, now unused)."""
    from srpo_mcore.tasks.replay import FORMAT_VERSION, encode_samples

    assert FORMAT_VERSION == 2
    original = samples(5)
    record = encode_samples(original)
    verdicts = {key: record.pop(key) for key in ("format_ok", "language_penalty", "status")}
    record["extras"] = [{"sampler_id": s.group, **{k: v[i] for k, v in verdicts.items()}}
                        for i, s in enumerate(original)]
    record.update(step=1, sampling_metrics={}, sampler_states={})
    (tmp_path / "rollouts").mkdir()
    torch.save(record, tmp_path / "rollouts" / step_file(1))
    replayed, _ = RolloutReplay(tmp_path / "rollouts").load_step(1, {})
    assert [(s.format_ok, s.language_penalty, s.status) for s in replayed] == \
           [(s.format_ok, s.language_penalty, s.status) for s in original]
    cfg = config(tmp_path, init_dir, "train.steps=1", f"train.replay_dir={tmp_path / 'rollouts'}")
    index = {**RolloutRecorder(tmp_path / "unused", cfg, _tokenizer(init_dir), is_writer=False).header,
             "format_version": 1, "steps": [1]}
    (tmp_path / "rollouts" / INDEX).write_text(json.dumps(index))
    assert replay_problems(cfg) == []
    (tmp_path / "rollouts" / INDEX).write_text(json.dumps({**index, "format_version": 3}))
    assert replay_problems(cfg) == [f"{tmp_path / 'rollouts' / INDEX}: format_version=3, this code reads 1 and 2"]


def _tokenizer(init_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(init_dir))


def test_a_matching_directory_has_no_problems(tmp_path, init_dir):
    cfg = config(tmp_path, init_dir, "train.steps=3")
    record(cfg, tmp_path / "rec", [1, 2, 3])
    assert replay_problems(config(tmp_path, init_dir, "train.steps=3", f"train.replay_dir={tmp_path / 'rec'}")) == []
    # dtype, layout and kernels may differ from the recording run's
    assert replay_problems(config(tmp_path, init_dir, "train.steps=3", f"train.replay_dir={tmp_path / 'rec'}",
                                  "model.params_dtype=bfloat16", "parallel.tensor_model_parallel_size=1",
                                  "train.kernel_backend=triton")) == []


def test_missing_steps_are_named(tmp_path, init_dir):
    rec = record(config(tmp_path, init_dir), tmp_path / "rec", [1, 2, 4])
    problems = replay_problems(config(tmp_path, init_dir, "train.steps=5", f"train.replay_dir={rec}"))
    assert problems == [f"{rec}: no step_000003.pt (2 of train.steps=5 step files missing; index.json lists steps "
                        "1-2, 4)"]
    (rec / step_file(2)).unlink()  # a file gone although the index lists it
    assert "no step_000002.pt" in replay_problems(config(tmp_path, init_dir, "train.steps=2",
                                                         f"train.replay_dir={rec}"))[0]


def test_model_tokenizer_and_group_size_mismatches_are_named(tmp_path, init_dir):
    rec = record(config(tmp_path, init_dir), tmp_path / "rec", [1])
    index = rec / INDEX
    base = ("train.steps=1", f"train.replay_dir={rec}")
    assert replay_problems(config(tmp_path, init_dir, *base, "model.hidden_size=256")) == [
        f"{index}: model.hidden_size=128 but the config has model.hidden_size=256"]
    assert replay_problems(config(tmp_path, init_dir, *base, "train.samples_per_prompt=4")) == [
        f"{index}: samples_per_prompt=2 but the config has train.samples_per_prompt=4"]
    saved = json.loads(index.read_text())
    index.write_text(json.dumps({**saved, "tokenizer": {**saved["tokenizer"], "vocab_sha256": "0" * 64}}))
    (problem,) = replay_problems(config(tmp_path, init_dir, *base))
    assert problem.startswith(f"{index}: tokenizer.vocab_sha256={'0' * 64} but train.init_checkpoint's tokenizer")
    assert replay_problems(config(tmp_path, init_dir, "train.steps=1", f"train.replay_dir={tmp_path}")) == [
        f"train.replay_dir={tmp_path}: no index.json there or in its rollouts/ (a directory written by a run with "
        "train.save_rollouts=true)"]


def test_entry_point_refuses_a_bad_replay_before_starting(tmp_path, init_dir, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    cfg = config(tmp_path, init_dir)
    rec = record(cfg, tmp_path / "rec", [1])
    data = tmp_path / "train.jsonl"
    argv = ["--config", str(REPO_ROOT / "configs/quickstart.yaml"), f"train.init_checkpoint={init_dir}",
            f"data.math_train_files=[{data}]", f"data.code_train_files=[{data}]", f"data.eval_files=[{data}]",
            f"train.run_dir={tmp_path / 'run'}", "train.samples_per_prompt=2", "train.steps=2", "--replay", str(rec)]
    assert load_entry_point().main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {rec}: no step_000002.pt (1 of train.steps=2 step files missing; index.json lists steps 1)"]
    assert not (tmp_path / "run").exists()


def test_saving_while_replaying_is_a_config_error(tmp_path, init_dir):
    from srpo_mcore.config import ConfigError

    with pytest.raises(ConfigError, match="train.save_rollouts"):
        config(tmp_path, init_dir, "train.save_rollouts=true", f"train.replay_dir={tmp_path}")
