"""The entry point refuses a run whose input files are missing before any rank builds anything, naming the key."""

import importlib.util

import pytest

from srpo_mcore.tasks.inputs import hf_checkpoint_problem
from tests.torchrun import REPO_ROOT


def load_entry_point():
    spec = importlib.util.spec_from_file_location("pretrain_srpo", REPO_ROOT / "pretrain_srpo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_hf_dir(root, *names):
    root.mkdir()
    for name in names:
        (root / name).write_text("{}")
    return root


def test_hf_checkpoint_directory_checks(tmp_path):
    full = fake_hf_dir(tmp_path / "full", "config.json", "model.safetensors.index.json", "tokenizer.json")
    assert hf_checkpoint_problem(full) is None
    no_tok = fake_hf_dir(tmp_path / "no_tok", "config.json", "model.safetensors")
    assert "no tokenizer (expected" in hf_checkpoint_problem(no_tok)
    bare = fake_hf_dir(tmp_path / "bare")
    assert "no config.json and no weights and no tokenizer" in hf_checkpoint_problem(bare)
    assert hf_checkpoint_problem(tmp_path / "absent") == "no such directory"
    assert hf_checkpoint_problem(full / "config.json") == "no such directory"


@pytest.mark.parametrize("rank, speaks", [("0", True), ("1", False)])
def test_entry_point_names_every_missing_input_and_exits_2(tmp_path, monkeypatch, capsys, rank, speaks):
    monkeypatch.setenv("RANK", rank)
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("")
    argv = ["--config", str(REPO_ROOT / "configs/quickstart.yaml"), f"train.init_checkpoint={tmp_path / 'nope'}",
            f"data.math_train_files=[{tmp_path / 'train.jsonl'}]", f"data.code_train_files=[{heldout}]",
            f"data.eval_files=[{heldout},{tmp_path / 'code.jsonl'}]",
            f"train.run_dir={tmp_path / 'run'}"]
    assert load_entry_point().main(argv) == 2
    err = capsys.readouterr().err
    if speaks:
        assert err.splitlines() == [f"error: train.init_checkpoint={tmp_path / 'nope'}: no such directory",
                                    f"error: data.math_train_files[0]={tmp_path / 'train.jsonl'}: no such file",
                                    f"error: data.eval_files[1]={tmp_path / 'code.jsonl'}: no such file"]
    else:
        assert err == ""
    assert not (tmp_path / "run").exists()  # nothing was started
