"""Typed config: loading, inheritance, overrides, and errors that name the key and say what to change."""

import subprocess
import sys

import pytest

from srpo_mcore.config import ConfigError, load_config, to_yaml, validate_world_size
from tests.torchrun import REPO_ROOT

MODELS = REPO_ROOT / "configs" / "models"


def test_overrides_and_types():
    cfg = load_config(MODELS / "tiny.yaml", ["train.steps=3", "optimizer.lr=1e-5", "rollout.temperature=0.7"])
    assert cfg.train.steps == 3 and cfg.optimizer.lr == 1e-5 and cfg.rollout.temperature == 0.7
    assert cfg.model.name == "tiny" and cfg.model.padded_vocab_size == 224


def test_base_inheritance(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"base: {MODELS / 'qwen2.5-7b.yaml'}\ntrain:\n  steps: 5\nmodel:\n  params_dtype: float32\n")
    cfg = load_config(child)
    assert cfg.model.hidden_size == 3584 and cfg.model.params_dtype == "float32" and cfg.train.steps == 5


@pytest.mark.parametrize("override, key, words", [
    (["train.stepz=3"], "train.stepz", "did you mean 'train.steps'"),
    (["train.steps=three"], "train.steps", "expected an integer"),
    (["logging.jsonl=maybe"], "logging.jsonl", "expected true/false"),
    (["parallel.tensor_model_parallel_size=3"], "parallel.tensor_model_parallel_size", "num_attention_heads"),
    (["parallel.tensor_model_parallel_size=4"], "parallel.tensor_model_parallel_size", "num_query_groups"),
    (["model.num_layers=3", "parallel.pipeline_model_parallel_size=2"], "parallel.pipeline_model_parallel_size",
     "does not divide model.num_layers"),
    (["model.make_vocab_size_divisible_by=1", "model.vocab_size=201", "model.num_query_groups=4",
      "parallel.tensor_model_parallel_size=2"], "parallel.tensor_model_parallel_size", "padded vocab"),
    (["rollout.tensor_parallel_size=3"], "rollout.tensor_parallel_size", "num_attention_heads"),
    (["optimizer.adam_beta2=1.5"], "optimizer.adam_beta2", "[0, 1)"),
    (["train.samples_per_prompt=1"], "train.samples_per_prompt", "at least 2"),
])
def test_errors_name_the_key(override, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(MODELS / "tiny.yaml", override)
    assert err.value.key == key
    assert words in str(err.value)


def test_world_size_must_divide_tp_times_pp():
    cfg = load_config(MODELS / "tiny.yaml", ["parallel.tensor_model_parallel_size=2",
                                             "parallel.pipeline_model_parallel_size=2"])
    assert validate_world_size(cfg, 8) == 2
    with pytest.raises(ConfigError, match="not divisible by TP x PP = 2 x 2"):
        validate_world_size(cfg, 6)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_real_model_presets_have_qwen_dims():
    dims = {}
    for name in ("0.5b", "1.5b", "7b", "32b"):
        m = load_config(MODELS / f"qwen2.5-{name}.yaml").model
        dims[name] = (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_query_groups, m.ffn_hidden_size,
                      m.vocab_size, m.tie_word_embeddings)
    assert dims == {"0.5b": (24, 896, 14, 2, 4864, 151936, True), "1.5b": (28, 1536, 12, 2, 8960, 151936, True),
                    "7b": (28, 3584, 28, 4, 18944, 152064, False), "32b": (64, 5120, 40, 8, 27648, 152064, False)}
    # 32B at TP8: 152064 / 8 = 19008 vocab rows per rank, no padding needed.
    assert load_config(MODELS / "qwen2.5-32b.yaml", ["parallel.tensor_model_parallel_size=8"]).model.padded_vocab_size == 152064


def test_print_config_cli_round_trips():
    out = subprocess.run([sys.executable, "pretrain_srpo.py", "--config", "configs/models/tiny.yaml", "--print-config",
                          "train.steps=7"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "steps: 7" in out.stdout
    assert out.stdout == to_yaml(load_config(MODELS / "tiny.yaml", ["train.steps=7"]))


def test_cli_rejects_bad_config_before_heavy_work():
    out = subprocess.run([sys.executable, "pretrain_srpo.py", "--config", "configs/models/tiny.yaml",
                          "parallel.tensor_model_parallel_size=3"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert "parallel.tensor_model_parallel_size" in out.stderr and "TP=3" in out.stderr


def test_cli_checks_data_names_at_load():
    """config does not import data; the entry point imports the data package, whose name checks then run at load."""
    out = subprocess.run([sys.executable, "pretrain_srpo.py", "--config", "configs/models/tiny.yaml",
                          "data.file_format=xml"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "config error at 'data.file_format'" in out.stderr and "'xml' is not one of" in out.stderr
