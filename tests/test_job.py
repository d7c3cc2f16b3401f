"""srpo_mcore.job's console routing (third-party notices to the per-rank log file only), the plain summary line that
replaces the progress bar off a terminal, and the one place Megatron is adapted to a CPU-only machine."""

import logging
import os
import subprocess
import sys
import warnings

import pytest

from srpo_mcore.config.train import LoggingConfig
from srpo_mcore.job import setup_logging
from srpo_mcore.train.metrics import MetricsLogger, summary_line
from tests.torchrun import REPO_ROOT


@pytest.fixture
def restore_logging():
    from transformers.utils import logging as hf_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    logging.captureWarnings(False)
    hf_logging.enable_default_handler()
    hf_logging.disable_propagation()
    for handler in root.handlers:
        handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("libraries_on_console", [False, True])
def test_console_gets_own_lines_and_errors_file_gets_everything(tmp_path, capsys, restore_logging,
                                                                libraries_on_console):
    log_file = setup_logging(tmp_path / "logs", rank=0, libraries_on_console=libraries_on_console)
    logging.getLogger("srpo_mcore.train").info("ours: 8 training prompts")
    logging.getLogger("srpo_mcore.rollout").warning("ours: removed 2 stale segments")
    logging.getLogger("megatron.core.models.gpt.gpt_model").warning("GPTModel IS DEPRECATED")
    logging.getLogger("vllm.renderers.base").warning("Chat template warmup failed")
    logging.getLogger("vllm.engine").error("library error that needs action")
    warnings.warn("Apex is not installed. Falling back to Torch Norm", UserWarning, stacklevel=1)
    for handler in logging.getLogger().handlers:
        handler.flush()
    console = capsys.readouterr().err
    assert "ours: 8 training prompts" in console and "ours: removed 2 stale segments" in console
    assert "library error that needs action" in console
    for notice in ("GPTModel IS DEPRECATED", "Chat template warmup failed", "Apex is not installed"):
        assert (notice in console) == libraries_on_console
    logged = log_file.read_text()
    for line in ("ours: 8 training prompts", "GPTModel IS DEPRECATED", "Chat template warmup failed",
                 "Apex is not installed", "library error that needs action"):
        assert line in logged
    assert log_file.name == "rank00000.log"


def test_other_ranks_write_only_their_file(tmp_path, capsys, restore_logging):
    log_file = setup_logging(tmp_path / "logs", rank=3)
    logging.getLogger("srpo_mcore.train").warning("rank 3 speaks")
    assert capsys.readouterr().err == ""
    assert "[rank3] srpo_mcore.train: rank 3 speaks" in log_file.read_text()
    assert log_file.name == "rank00003.log"


def test_summary_lines_replace_the_bar_off_a_terminal(tmp_path, capsys):
    cfg = LoggingConfig(tensorboard=False, jsonl=False, progress_bar=True, summary_interval=2)
    metrics = MetricsLogger(tmp_path, cfg, is_writer=True, total_steps=5)  # pytest's stderr is not a terminal
    assert metrics._bar is None
    for step in range(1, 6):
        metrics.log(step, {"reward/mean": 0.5 + step / 100, "accuracy/mean": 0.25, "time/step_s": 2.0})
    metrics.close()
    out = capsys.readouterr()
    assert "\r" not in out.out + out.err
    assert out.out.splitlines() == ["step 2/5: reward 0.52, accuracy 0.25, 2 s/step",
                                    "step 4/5: reward 0.54, accuracy 0.25, 2 s/step"]


def test_summary_line_names_what_the_record_has():
    assert summary_line(3, 10, {"reward/mean": 1.0, "response/length_mean": 17.25}) == \
        "step 3/10: reward 1, length 17.2"


def test_megatron_objects_need_init_model_parallel():
    """The CPU adaptation runs once, in init_model_parallel; building a model without it is refused at once (rather
    than failing later in a CUDA call)."""
    code = ("from srpo_mcore.config import load_config\n"
            "from srpo_mcore.model.qwen2 import build_model\n"
            "cfg = load_config('configs/quickstart.yaml')\n"
            "try:\n"
            "    build_model(cfg.model, cfg.parallel, pre_process=True, post_process=True)\n"
            "except RuntimeError as e:\n"
            "    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert "after srpo_mcore.distributed.init_model_parallel()" in proc.stdout, proc.stderr[-3000:]


def test_adaptation_has_one_call_site():
    """Every other module relies on init_model_parallel having adapted Megatron (platform.py's docstring)."""
    callers = [str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "srpo_mcore").rglob("*.py")
               if "adapt_megatron_for_cpu()" in p.read_text() and p.name != "platform.py"]
    assert callers == ["srpo_mcore/distributed.py"]


def test_native_stderr_goes_to_the_log_file_while_an_engine_starts(tmp_path, capfd):
    from srpo_mcore.job import native_stderr_to

    log_file = tmp_path / "rank00000.log"
    log_file.write_text("earlier line\n")
    with native_stderr_to(log_file):
        os.write(2, b"[W utils.cpp:68] Warning: NUMA binding: Using MEMBIND policy\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    assert log_file.read_text() == "earlier line\n[W utils.cpp:68] Warning: NUMA binding: Using MEMBIND policy\n"
