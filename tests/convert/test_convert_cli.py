"""python -m srpo_mcore.convert: a bit-exact round trip, and bad input named before any rank starts."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.torchrun import REPO_ROOT


def convert(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "srpo_mcore.convert", *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def read_hf(dir_):
    index = json.loads((dir_ / "model.safetensors.index.json").read_text())["weight_map"]
    tensors = {}
    for file in set(index.values()):
        tensors.update(load_file(dir_ / file))
    return tensors


@pytest.mark.distributed
def test_hf_to_mcore_to_hf_is_bit_exact(tiny_hf_dir, tmp_path):
    r = convert("hf-to-mcore", "--hf", tiny_hf_dir, "--out", tmp_path / "mcore", "--tp", 2)
    assert r.returncode == 0, r.stderr[-3000:]
    r = convert("mcore-to-hf", "--mcore", tmp_path / "mcore", "--out", tmp_path / "hf", "--dtype", "float32")
    assert r.returncode == 0, r.stderr[-3000:]
    original = load_file(tiny_hf_dir / "model.safetensors")
    back = read_hf(tmp_path / "hf")
    assert sorted(back) == sorted(original)
    assert all(torch.equal(back[k], original[k]) for k in original)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["num_key_value_heads"] == 2


def copy_checkpoint(src, dst, edit=None):
    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    tensors = load_file(src / "model.safetensors")
    if edit:
        edit(tensors)
    save_file(tensors, dst / "model.safetensors")
    return dst


def test_not_a_qwen2_config_is_refused(tiny_hf_dir, tmp_path):
    bad = copy_checkpoint(tiny_hf_dir, tmp_path / "llama")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model_type"] = "llama"
    (bad / "config.json").write_text(json.dumps(cfg))
    r = convert("hf-to-mcore", "--hf", bad, "--out", tmp_path / "out")
    assert r.returncode != 0 and "not 'qwen2'" in r.stderr


def test_missing_tensor_is_named(tiny_hf_dir, tmp_path):
    bad = copy_checkpoint(tiny_hf_dir, tmp_path / "missing", lambda t: t.pop("model.layers.2.self_attn.k_proj.weight"))
    r = convert("hf-to-mcore", "--hf", bad, "--out", tmp_path / "out")
    assert r.returncode != 0 and "model.layers.2.self_attn.k_proj.weight' is missing" in r.stderr


def test_misshaped_tensor_is_named(tiny_hf_dir, tmp_path):
    def shrink(t):
        t["model.layers.1.mlp.up_proj.weight"] = t["model.layers.1.mlp.up_proj.weight"][:-1]

    bad = copy_checkpoint(tiny_hf_dir, tmp_path / "shape", shrink)
    r = convert("hf-to-mcore", "--hf", bad, "--out", tmp_path / "out")
    assert r.returncode != 0 and "model.layers.1.mlp.up_proj.weight' has shape (255, 128)" in r.stderr


def test_layout_that_cannot_split_is_refused_before_launch(tiny_hf_dir, tmp_path):
    r = convert("hf-to-mcore", "--hf", tiny_hf_dir, "--out", tmp_path / "out", "--tp", 4)
    assert r.returncode != 0 and "num_query_groups=2" in r.stderr


def test_non_empty_output_is_not_overwritten(tiny_hf_dir, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("precious")
    r = convert("hf-to-mcore", "--hf", tiny_hf_dir, "--out", tmp_path / "out")
    assert r.returncode != 0 and "not empty" in r.stderr
    assert (tmp_path / "out" / "keep.txt").read_text() == "precious"
