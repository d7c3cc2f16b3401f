"""One ``pretrain_srpo.py --nproc 2`` training run per comparison arm, shared by the comparisons that train the
real system several times (benchmarks/samplers.py, benchmarks/stages.py).

A finished run (its ``wall_time.json`` names the same overrides) is reused when a comparison is repeated; a run
another live comparison process is training is refused instead of clobbered; the console goes to the run's
``console.log``, whose tail is shown if the run fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1"}


def train(run_dir: Path, config: str, overrides: list[str], *, label: str, timeout: float) -> Path:
    """Train ``config`` with ``overrides`` (which must set ``train.run_dir={run_dir}``) on 2 ranks, or reuse
    ``run_dir`` when it holds the finished run of the same overrides. Returns ``run_dir``."""
    done = run_dir / "wall_time.json"
    if done.is_file() and json.loads(done.read_text()).get("overrides") == overrides:
        print(f"== {label}: reusing {run_dir}", flush=True)
        return run_dir
    owner = run_dir / "running.pid"  # another comparison process (same output) is training this run
    if owner.is_file() and Path(f"/proc/{owner.read_text().strip()}").exists():
        raise SystemExit(f"error: process {owner.read_text().strip()} is running {run_dir}; wait for it or use "
                         "another --out")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    owner.write_text(str(os.getpid()))
    print(f"== {label} -> {run_dir}", flush=True)
    cmd = [sys.executable, "pretrain_srpo.py", "--nproc", "2", "--config", config, *overrides]
    start = time.time()
    with (run_dir / "console.log").open("w") as log:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=run_env(), stdout=log, stderr=subprocess.STDOUT,
                              timeout=timeout)
    wall = time.time() - start
    if proc.returncode != 0:
        tail = (run_dir / "console.log").read_text()[-3000:]
        raise SystemExit(f"error: the {label} run failed ({proc.returncode}); {run_dir}/console.log ends:\n{tail}")
    done.write_text(json.dumps({"wall_s": wall, "overrides": overrides}))
    owner.unlink()
    return run_dir


def metrics_rows(run_dir: Path) -> list[dict]:
    """The run's ``metrics.jsonl`` records, in order."""
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
