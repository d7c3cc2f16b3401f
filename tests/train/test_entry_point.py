"""pretrain_srpo.py before any rank starts: a malformed data row is one ``error: FILE: line N: field ...`` line and
exit code 2 (no process group, no traceback); started without torchrun it relaunches itself under torchrun."""

import importlib.util
import json
import subprocess
import sys

import pytest

from srpo_mcore.distributed import free_local_port, torchrun_argv
from tests.torchrun import REPO_ROOT, run_isolated, torchrun_command


def load_entry_point():
    spec = importlib.util.spec_from_file_location("pretrain_srpo", REPO_ROOT / "pretrain_srpo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def inputs(tmp_path):
    """A checkpoint directory that passes the file check, a training file whose line 2 has an int problem, and a
    good one."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (ckpt / name).write_text("{}")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": 7, "answer": "3"}\n')
    good = tmp_path / "good.jsonl"
    good.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": "2+2", "answer": "4"}\n')
    return {"ckpt": ckpt, "bad": bad, "good": good, "run": tmp_path / "run"}


TP2 = ("parallel.tensor_model_parallel_size=2", "rollout.tensor_parallel_size=2")  # the quickstart runs TP1 x DP


def argv_for(inputs, train_file):
    return ["--config", str(REPO_ROOT / "configs/quickstart.yaml"), f"train.init_checkpoint={inputs['ckpt']}",
            f"data.math_train_files=[{train_file}]", "data.code_train_files=[]", f"data.eval_files=[{inputs['good']}]",
            "stages.two_stage=false", f"train.run_dir={inputs['run']}"]


def test_bad_row_is_one_line_and_exit_2(inputs):
    """Before: the row error surfaced after start-up as a RuntimeError traceback (no torchrun), or as ~110 console
    lines with a traceback per rank (under torchrun), exit code 1."""
    proc = subprocess.run([sys.executable, "pretrain_srpo.py", *argv_for(inputs, inputs["bad"])], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [f"error: {inputs['bad']}: line 2: field 'problem': expected str, got int"]
    assert proc.stdout == ""
    assert not inputs["run"].exists()  # no rank started


def test_under_torchrun_only_rank_0_reports_and_no_rank_raises(inputs):
    """Started with torchrun directly, every rank checks and exits 2 before building anything; rank 0 alone prints
    the line. (torchrun itself then reports the failed ranks: its summary is outside the program's control.)"""
    proc = run_isolated(torchrun_command(2, "pretrain_srpo.py", *argv_for(inputs, inputs["bad"])), timeout=300)
    console = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert console.count("error: ") == 1 and "line 2: field 'problem': expected str, got int" in console
    assert "[rank0]: Traceback" not in console and "[rank1]: Traceback" not in console
    assert "exitcode  : 2" in console
    assert not inputs["run"].exists()


def test_world_size_that_cannot_hold_the_layout_is_one_line(inputs, monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert load_entry_point().main([*argv_for(inputs, inputs["good"]), *TP2, "--nproc", "3"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: config error at 'parallel': world size 3 is not divisible by TP x PP")


def test_plain_start_relaunches_itself_under_torchrun(inputs, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    calls = []
    import srpo_mcore.distributed as distributed

    monkeypatch.setattr(distributed, "relaunch_under_torchrun", lambda *args: calls.append(args) or 0)
    entry = load_entry_point()
    argv = [*argv_for(inputs, inputs["good"]), *TP2]
    assert entry.main(argv) == 0
    assert entry.main(argv_for(inputs, inputs["good"])) == 0
    ((program, relaunched_argv, nproc), (_, _, nproc_quickstart)) = calls
    assert program == entry.__file__ and relaunched_argv == argv
    assert nproc == 2  # lcm(TP x PP = 2, rollout TP = 2)
    assert nproc_quickstart == 1  # the quickstart's data-parallel layout fits one rank (make quickstart asks for 2)
    assert not inputs["run"].exists()  # the ranks build the run, not the launcher


def test_a_script_gets_its_argv_verbatim_under_torchrun(tmp_path):
    script = tmp_path / "echo_argv.py"
    script.write_text("import json, os, sys\nprint(json.dumps([os.environ['WORLD_SIZE'], sys.argv[1:]]))\n")
    argv = ["--config", "x.yaml", "--nproc", "1", "train.steps=3"]
    proc = subprocess.run(torchrun_argv(str(script), argv, 1, free_local_port()), cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["1", argv]


def test_debug_section_is_validated(capsys):
    entry = load_entry_point()
    config = str(REPO_ROOT / "configs/quickstart.yaml")
    assert entry.main(["--config", config, "debug.kill_rank0_at_step=-2", "--print-config"]) == 2
    assert "debug.kill_rank0_at_step" in capsys.readouterr().err
    assert entry.main(["--config", config, "debug.kill_rank0_at_step=3", "--print-config"]) == 0
    assert "kill_rank0_at_step: 3" in capsys.readouterr().out
