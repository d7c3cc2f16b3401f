"""``python -m srpo_mcore.eval``: bad input is a clear error (exit 2) before any rank starts; run in-process, so
no torchrun job can start. Also how ``--mcore`` resolves trainer checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

from srpo_mcore.eval.cli import main


def one_problem(tmp_path: Path) -> str:
    path = tmp_path / "one.jsonl"
    path.write_text('{"problem": "1+1=", "answer": "2"}\n')
    return str(path)


def test_missing_checkpoint(tmp_path, capsys):
    assert main(["--hf", str(tmp_path / "nope"), "--data", one_problem(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "config.json: missing (not an HF checkpoint directory)" in capsys.readouterr().err


def test_unknown_benchmark_and_bad_k(tiny_qwen25_hf, tmp_path, capsys):
    assert main(["--hf", str(tiny_qwen25_hf), "--benchmark", "aime42", "--out", str(tmp_path)]) == 2
    assert "unknown benchmark(s) aime42; known: aime24" in capsys.readouterr().err
    assert main(["--hf", str(tiny_qwen25_hf), "--benchmark", "aime24", "--k", "0", "--out", str(tmp_path)]) == 2
    assert "--k must be >= 1, got 0" in capsys.readouterr().err
    assert main(["--hf", str(tiny_qwen25_hf), "--out", str(tmp_path)]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


def test_layout_and_data_errors_name_the_flag_or_file(tiny_qwen25_hf, tmp_path, capsys):
    assert main(["--hf", str(tiny_qwen25_hf), "--data", str(tmp_path / "x.jsonl"), "--out", str(tmp_path)]) == 2
    assert "x.jsonl: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1=", "answer": "2"}\n{"problem": "", "answer": "3"}\n')
    assert main(["--hf", str(tiny_qwen25_hf), "--data", str(bad), "--out", str(tmp_path)]) == 2
    assert "bad.jsonl: line 2: field 'problem': empty text" in capsys.readouterr().err
    assert main(["--hf", str(tiny_qwen25_hf), "--data", str(bad), "--tp", "3", "--out", str(tmp_path)]) == 2
    assert "TP=3 does not divide model.num_attention_heads=2 (set by --tp)" in capsys.readouterr().err
    # the same value from --set: the flag was not given, so the error does not blame it
    assert main(["--hf", str(tiny_qwen25_hf), "--data", str(bad), "--set", "parallel.tensor_model_parallel_size=3",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "TP=3 does not divide model.num_attention_heads=2" in err and "--tp" not in err


def test_mcore_checkpoints_resolve_or_explain(tmp_path, capsys):
    from srpo_mcore.config import load_config, to_yaml
    from srpo_mcore.eval.checkpoint import resolve_mcore

    converted = tmp_path / "converted"
    converted.mkdir()
    (converted / "srpo_model_config.json").write_text(json.dumps({"name": "m", "vocab_size": 300}))
    out, data = tmp_path / "o", one_problem(tmp_path)
    assert main(["--mcore", str(converted), "--data", data, "--out", str(out)]) == 2
    assert "a Megatron checkpoint holds no tokenizer; pass --tokenizer DIR" in capsys.readouterr().err

    run = tmp_path / "run"  # a trainer run directory: config.yaml + checkpoints/latest -> step_000002
    step = run / "checkpoints" / "step_000002"
    (step / "model_optim").mkdir(parents=True)
    (step / "trainer_state.json").write_text("{}")
    (run / "checkpoints" / "latest").write_text("step_000002")
    (run / "config.yaml").write_text(to_yaml(load_config("configs/quickstart.yaml", ["train.init_checkpoint=/tok"])))
    for path in (run, step):
        ckpt = resolve_mcore(path, None)
        assert (ckpt.kind, ckpt.path, ckpt.tokenizer, ckpt.model.name) == ("trainer", step / "model_optim",
                                                                          Path("/tok"), "quickstart-arith")
    assert resolve_mcore(run, "bfloat16").model.params_dtype == "bfloat16"
    assert main(["--mcore", str(tmp_path), "--data", data, "--out", str(out)]) == 2
    assert "nor a run directory (no checkpoints/latest)" in capsys.readouterr().err
