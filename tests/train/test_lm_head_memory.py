"""benchmarks/lm_head_memory.py at a small shape: both paths run through the trainer's loss code in their own
process, give the same loss, and the fused LM head needs clearly less memory than the logits path."""

import json
import sys

from tests.torchrun import run_isolated


def test_fused_lm_head_needs_less_memory_than_the_logits_path(tmp_path):
    out = tmp_path / "lm_head.json"
    proc = run_isolated([sys.executable, "benchmarks/lm_head_memory.py", "--tokens", "4096", "--hidden", "64",
                         "--vocab", "16384", "--dtype", "float32", "--json", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    logits, fused = json.loads(out.read_text())["results"]
    assert (logits["path"], fused["path"]) == ("logits", "fused")
    assert abs(logits["loss"] - fused["loss"]) <= 1e-5 * max(1.0, abs(logits["loss"]))
    assert abs(logits["entropy"] - fused["entropy"]) <= 1e-5 * abs(logits["entropy"])
    # the logits path holds at least the [4096, 16384] fp32 logits (256 MiB) and their gradient
    assert logits["peak_extra_bytes"] >= 2 * logits["logits_bytes"]
    assert fused["peak_extra_bytes"] < 0.75 * logits["peak_extra_bytes"]
