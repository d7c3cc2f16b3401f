"""The Slurm launcher: shell syntax and lint, the command line it builds, its requeue decisions.

A live one-node cluster run is scripts/slurm_smoke.sh (root + Debian slurm packages); these tests need only bash
and shellcheck.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [ROOT / "slurm/srpo.sbatch", ROOT / "slurm/launch.sh", ROOT / "scripts/slurm_smoke.sh"]


def bash(script, env=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SRPO_"))}
    full_env.update(env or {})
    return subprocess.run(["bash", "-c", script], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(path):
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is required for this test: apt-get install shellcheck (Debian 12: 0.9.0)"
    result = subprocess.run([shellcheck, "-x", *map(str, SCRIPTS)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sbatch_header():
    header = [line for line in (ROOT / "slurm/srpo.sbatch").read_text().splitlines() if line.startswith("#SBATCH")]
    text = "\n".join(header)
    for needed in ("--ntasks-per-node=1", "--gpus-per-node=8", "--requeue", "--open-mode=append", "--exclusive"):
        assert needed in text
    grace = int(re.search(r"--signal=B:USR1@(\d+)", text).group(1))
    launch = (ROOT / "slurm/launch.sh").read_text()
    shutdown = int(re.search(r"SRPO_STOP_GRACE_S:-(\d+)", launch).group(1))
    assert shutdown < grace  # torchrun's grace for the ranks ends before Slurm's time limit


FAKE_JOB = {"SLURM_JOB_ID": "1234", "SLURM_JOB_NUM_NODES": "4", "SLURM_JOB_NODELIST": "gpu[017-020]",
            "SLURM_CPUS_ON_NODE": "96"}


def print_command(*args, **env):
    result = bash(" ".join(["bash slurm/srpo.sbatch --print-command", *args]), {**FAKE_JOB, **env})
    assert result.returncode == 0, result.stderr
    exports, command = result.stdout.strip().splitlines()[:-1], result.stdout.strip().splitlines()[-1]
    return exports, command.split()


def test_print_command_builds_srun_and_torchrun():
    exports, argv = print_command("configs/srpo/qwen2.5-32b-4x8.yaml", "train.steps=3")
    run_dir = ROOT / "runs/srpo-qwen2.5-32b-4x8"  # the config's train.run_dir, made absolute
    srun = argv[:argv.index("-m") - 1]
    assert srun[0] == "srun"
    assert {"--nodes=4", "--ntasks=4", "--ntasks-per-node=1", "--cpus-per-task=96", "--kill-on-bad-exit=1",
            f"--chdir={ROOT}", f"--output={run_dir}/logs/slurm-1234-r0/%N.log"} <= set(srun)
    torchrun = argv[len(srun):]
    assert torchrun[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nnodes=4", "--nproc-per-node=8", "--rdzv-backend=c10d", "--rdzv-endpoint=gpu017:21234",
            "--rdzv-id=srpo-1234-r0", "--max-restarts=0"} <= set(torchrun)
    program = torchrun[torchrun.index("pretrain_srpo.py"):]
    assert program == ["pretrain_srpo.py", "--config", "configs/srpo/qwen2.5-32b-4x8.yaml", "train.steps=3",
                       f"train.run_dir={run_dir}"]
    env = dict(line.removeprefix("export ").split("=", 1) for line in exports)
    assert env["CUDA_DEVICE_MAX_CONNECTIONS"] == "1" and env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"
    assert env["OMP_NUM_THREADS"] == "12"  # 96 CPUs / 8 ranks
    assert env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] == "570"


def test_print_command_overrides():
    _, argv = print_command("configs/quickstart.yaml", SRPO_ENTRY="scripts/slurm_smoke_worker.py",
                            SRPO_GPUS_PER_NODE="2", SRPO_RUN_DIR="/scratch/run", SLURM_RESTART_COUNT="3",
                            SRPO_RDZV_PORT="29400", SRPO_PYTHON="/opt/py/bin/python")
    assert argv[argv.index("-m") - 1] == "/opt/py/bin/python"
    assert "--nproc-per-node=2" in argv and "--rdzv-endpoint=gpu017:29400" in argv
    assert "--rdzv-id=srpo-1234-r3" in argv and "--output=/scratch/run/logs/slurm-1234-r3/%N.log" in argv
    assert argv[-4:] == ["scripts/slurm_smoke_worker.py", "--config", "configs/quickstart.yaml",
                         "train.run_dir=/scratch/run"]


def test_bad_config_is_reported_before_anything_runs():
    result = bash("bash slurm/srpo.sbatch --print-command configs/srpo/nope.yaml", FAKE_JOB)
    assert result.returncode == 2 and "cannot read train.run_dir" in result.stderr


@pytest.mark.parametrize("nodelist,first", [("gpu[017-020]", "gpu017"), ("gpu[003-006,9],cpu1", "gpu003"),
                                            ("node7", "node7"), ("a1,a2", "a1")])
def test_first_host_fallback(nodelist, first):
    result = bash(f"source slurm/launch.sh; PATH=/nonexistent srpo_first_host '{nodelist}'")
    assert result.stdout.strip() == first


@pytest.mark.parametrize("reason,rc,restarts,expected", [
    ("time-limit", 1, 0, "yes"),  # torchrun turns the ranks' exit 75 into 1: the signal decides
    ("time-limit", 75, 19, "yes"),
    ("time-limit", 1, 20, "no: already restarted 20 times"),
    ("stop", 1, 0, "no: stop requested"),
    ("terminated", 1, 0, "no: SIGTERM from Slurm"),
    ("", 75, 0, "yes"),  # the trainer checkpointed on a signal this script did not send
    ("", 0, 0, "no: training finished"),
    ("", 1, 0, "no: the job failed with exit code 1"),
])
def test_requeue_decision(reason, rc, restarts, expected):
    result = bash(f"source slurm/launch.sh; srpo_should_requeue '{reason}' {rc} {restarts} 20")
    assert result.stdout.strip().startswith(expected), result.stdout + result.stderr
