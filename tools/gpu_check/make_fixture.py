"""Regenerate tools/gpu_check/fixture/: what the GPU check's trainer replay (part ``replay``) starts from.

    .venv/bin/python tools/gpu_check/make_fixture.py          # ~3 min on 2 cores; rewrites the fixture

1. the quickstart's arithmetic data (single-digit sums, math only) and a base model pretrained on it for 80 steps
   (srpo_mcore.quickstart.pretrain: 4 layers, hidden 128, vocab 89, ~0.8M parameters, fp32 safetensors);
2. ``config.yaml``: the quickstart config at TP1 (trainer and rollout), 3 steps of 8 prompts x 4 samples, math only,
   no evaluation, paths relative to the repository root;
3. a real run of that config on CPU (1 rank, vLLM-CPU rollouts, the rule rewards) with ``train.save_rollouts``:
   its ``rollouts/`` become the fixture's;
4. a CPU replay of those rollouts (TP1, fp32, torch kernels): its ``metrics.jsonl`` becomes
   ``cpu_replay_metrics.jsonl``, the losses the GPU replay is checked against.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path("tools/gpu_check/fixture")  # relative to REPO: config.yaml's paths are too
OVERRIDES = [
    "parallel.tensor_model_parallel_size=1", "rollout.tensor_parallel_size=1", "train.steps=3",
    "train.prompts_per_step=8", "train.samples_per_prompt=4", "rollout.max_response_length=24",
    "train.save_interval=0", "train.eval_interval=0", "train.export_hf_at_end=false", "stages.two_stage=false",
    f"train.init_checkpoint={FIXTURE}/base", f"data.math_train_files=[{FIXTURE}/data/train.jsonl]",
    "data.code_train_files=[]", "data.eval_files=[]", "train.run_dir=runs/gpu_check",
    "logging.progress_bar=false", "logging.tensorboard=false", "rewards.math_workers=1",
]


def run(*cmd: str) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, env=None)


def torchrun(nproc: int, *args: str) -> None:
    run(sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
        "--master_addr=127.0.0.1", "--master_port=29517", *args)


def main() -> int:
    sys.path.insert(0, str(REPO))
    from srpo_mcore.config import load_config, to_yaml

    fixture = REPO / FIXTURE
    shutil.rmtree(fixture, ignore_errors=True)
    (fixture / "data").mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check_fixture_") as tmp:
        tmp = Path(tmp)
        run(sys.executable, "-m", "srpo_mcore.quickstart.arithmetic", "--out", str(tmp / "data"), "--train", "80",
            "--heldout", "16", "--max-operand", "9")
        shutil.copy(tmp / "data" / "train.jsonl", fixture / "data" / "train.jsonl")
        torchrun(2, "-m", "srpo_mcore.quickstart.pretrain", "--out", str(fixture / "base"), "--tp", "2",
                 "--steps", "80",
                 "--max-operand", "9", "--eval-problems", "16", "--batch-size", "32")
        cfg = load_config(REPO / "configs/quickstart.yaml", OVERRIDES)
        (fixture / "config.yaml").write_text(
            "# The GPU check's replay config, written by tools/gpu_check/make_fixture.py (paths: repository root).\n"
            + to_yaml(cfg))
        torchrun(1, "pretrain_srpo.py", "--config", str(fixture / "config.yaml"), "train.save_rollouts=true",
                 f"train.run_dir={tmp / 'record'}")
        shutil.copytree(tmp / "record" / "rollouts", fixture / "rollouts")
        torchrun(1, "pretrain_srpo.py", "--config", str(fixture / "config.yaml"), "--replay",
                 str(fixture / "rollouts"), f"train.run_dir={tmp / 'replay'}")
        shutil.copy(tmp / "replay" / "metrics.jsonl", fixture / "cpu_replay_metrics.jsonl")
    size = sum(p.stat().st_size for p in fixture.rglob("*") if p.is_file())
    print(f"wrote {fixture}: {size / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
