"""Stand-in for pretrain_srpo.py in scripts/slurm_smoke.sh: proves the Slurm -> srun -> torchrun -> c10d path and
plays the trainer's side of the stop/requeue contract, without a model.

    SRPO_ENTRY=scripts/slurm_smoke_worker.py sbatch ... slurm/srpo.sbatch CONFIG [overrides]

Every rank joins a gloo process group, all-reduces its rank and writes <run_dir>/smoke/rank_<r>.json.
With SRPO_SMOKE_WAIT_FOR_STOP=1 and no checkpoint yet, the ranks then wait for SIGTERM; on it rank 0 writes a
checkpoint directory and the ``checkpoints/latest`` pointer (as srpo_mcore/train/checkpoint.py does), a
repeated SIGTERM is ignored, and every rank exits 75. A run that finds ``checkpoints/latest`` reports the resume
and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

EXIT_CHECKPOINTED_ON_SIGNAL = 75
_stop_requested = False


def _on_sigterm(signum, frame) -> None:
    global _stop_requested
    _stop_requested = True  # a second SIGTERM (torchrun forwards the one Slurm already sent) changes nothing


def _run_dir(argv: list[str]) -> Path:
    for arg in argv:
        if arg.startswith("train.run_dir="):
            return Path(arg.split("=", 1)[1])
    raise SystemExit("slurm_smoke_worker: expected a train.run_dir=... argument (slurm/launch.sh passes one)")


def main(argv: list[str]) -> int:
    import torch
    import torch.distributed as dist

    signal.signal(signal.SIGTERM, _on_sigterm)
    run_dir = _run_dir(argv)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    total = torch.tensor([rank], dtype=torch.int64)
    dist.all_reduce(total)
    ok = int(total.item()) == world * (world - 1) // 2
    restart = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    latest = run_dir / "checkpoints" / "latest"
    record = {"rank": rank, "world": world, "host": socket.gethostname(), "allreduce_ok": ok, "restart": restart,
              "resumed_from": latest.read_text().strip() if latest.is_file() else None}
    (run_dir / "smoke").mkdir(parents=True, exist_ok=True)
    (run_dir / "smoke" / f"rank_{rank}.r{restart}.json").write_text(json.dumps(record))
    print(f"smoke rank {rank}/{world} on {record['host']}: all-reduce {'ok' if ok else 'WRONG'}, restart {restart}, "
          f"resumed from {record['resumed_from']}", flush=True)
    if not ok:
        return 1
    if os.environ.get("SRPO_SMOKE_WAIT_FOR_STOP") != "1" or record["resumed_from"]:
        dist.destroy_process_group()
        return 0
    deadline = time.monotonic() + float(os.environ.get("SRPO_SMOKE_WAIT_S", "300"))
    while not _stop_requested and time.monotonic() < deadline:
        time.sleep(0.2)
    if not _stop_requested:
        print(f"smoke rank {rank}: no SIGTERM arrived", flush=True)
        return 1
    print(f"smoke rank {rank}: SIGTERM, saving", flush=True)
    if rank == 0:
        (run_dir / "checkpoints" / "step_000001").mkdir(parents=True, exist_ok=True)
        tmp = latest.with_name("latest.tmp")
        tmp.write_text("step_000001")
        os.replace(tmp, latest)
    time.sleep(2.0)  # a save that outlives the first SIGTERM and sees torchrun's forwarded one
    print(f"smoke rank {rank}: saved, exiting {EXIT_CHECKPOINTED_ON_SIGNAL}", flush=True)
    return EXIT_CHECKPOINTED_ON_SIGNAL


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
