"""Training checkpoints: model + optimizer (Megatron distributed checkpoint), RNG states per rank, and the
trainer's own state (step, sampler / History Resampling, stage schedule, LR scheduler) as JSON.

Layout under ``<run_dir>/checkpoints/``::

    step_000010/            one complete checkpoint (written as step_000010.tmp, renamed when complete)
        model_optim/        Megatron torch_dist checkpoint of {"model", "optimizer"}
        rng/rank_00000.pt   torch / python / numpy / model-parallel RNG states of each rank
        trainer_state.json  everything else needed to continue exactly, and the layout that wrote it
    latest                  the name of the newest complete checkpoint (replaced atomically)

The newest checkpoint is never half-written: a crash mid-save leaves only a ``.tmp`` directory, which the next
save removes. Only the last ``keep_last`` complete checkpoints are kept. The read side that evaluation needs (the
newest complete step, the model half) is in ``srpo_mcore/model/trainer_checkpoint.py``.

Resuming at another layout (a job that comes back on a different number of GPUs): with the non-distributed
optimizer, a checkpoint written at one TP x PP x DP layout loads at another of the same world size; Megatron's
torch_dist format reshards the weights and the Adam moments (fp32 main params and moments with bf16 params), and
the trainer state is layout-free JSON (tests/distributed/test_resume_layouts.py checks TP2 -> TP1 and TP2 -> TP2xPP2
exactly). The distributed optimizer's state is a flat buffer per DP rank and is not resharded: a checkpoint where
either side uses it loads only at the layout and optimizer kind that wrote it, and :meth:`CheckpointManager.load`
refuses anything else before reading a tensor, naming both layouts. The per-rank RNG files need the same world size.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from srpo_mcore.model.trainer_checkpoint import latest_complete_step

EXIT_CHECKPOINTED_ON_SIGNAL = 75  # EX_TEMPFAIL: SLURM scripts requeue the job on this exit code


@dataclass
class Resumed:
    step: int
    trainer_state: dict
    path: Path


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _rng_state() -> dict:
    from megatron.core import tensor_parallel

    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
            "model_parallel": tensor_parallel.get_cuda_rng_tracker().get_states()}


def _set_rng_state(state: dict) -> None:
    from megatron.core import tensor_parallel

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["model_parallel"])


def current_layout(optimizer) -> dict:
    """This job's parallel layout and optimizer kind, as recorded in (and checked against) a checkpoint."""
    from megatron.core import parallel_state as mpu
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    inner = getattr(optimizer, "chained_optimizers", [optimizer])
    return {"tp": mpu.get_tensor_model_parallel_world_size(), "pp": mpu.get_pipeline_model_parallel_world_size(),
            "dp": mpu.get_data_parallel_world_size(),
            "distributed_optimizer": any(isinstance(o, DistributedOptimizer) for o in inner)}


def describe_layout(layout: dict) -> str:
    kind = "distributed" if layout["distributed_optimizer"] else "non-distributed"
    return f"TP{layout['tp']} PP{layout['pp']} DP{layout['dp']} with the {kind} optimizer"


def check_resume_layout(path: Path, saved: dict | None, mine: dict) -> None:
    """Raise unless the checkpoint at ``path``, written at layout ``saved``, can be loaded at ``mine``: any layout
    when neither uses the distributed optimizer (Megatron reshards weights and Adam moments across TP/PP/DP), the
    same layout and optimizer kind otherwise. ``saved`` is None for checkpoints written before layouts were
    recorded (not checked)."""
    if saved is None or saved == mine:
        return
    if saved["distributed_optimizer"] or mine["distributed_optimizer"]:
        raise RuntimeError(
            f"{path}: written at {describe_layout(saved)}; this job runs {describe_layout(mine)}. The distributed "
            "optimizer's state does not reshard across layouts or optimizer kinds: resume at the checkpoint's "
            "layout (parallel.tensor_model_parallel_size, parallel.pipeline_model_parallel_size, the number of ranks "
            "and parallel.use_distributed_optimizer as above), or write checkpoints with "
            "parallel.use_distributed_optimizer=false to change layouts")


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class CheckpointManager:
    def __init__(self, run_dir: str | Path, keep_last: int):
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last

    # ------------------------------------------------------------------ save
    def save(self, step: int, model_chunk: torch.nn.Module, optimizer, trainer_state: dict) -> Path:
        """Collective: every rank calls it at the same step."""
        from megatron.core import dist_checkpointing

        layout = current_layout(optimizer)
        name = f"step_{step:06d}"
        final, tmp = self.root / name, self.root / (name + ".tmp")
        if _rank() == 0:
            for stale in self.root.glob("*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)
            (tmp / "rng").mkdir(parents=True)
        _barrier()
        model_sd = model_chunk.sharded_state_dict()
        sharded = {"model": model_sd, "optimizer": optimizer.sharded_state_dict(model_sd)}
        (tmp / "model_optim").mkdir(exist_ok=True)
        dist_checkpointing.save(sharded, str(tmp / "model_optim"))
        torch.save(_rng_state(), tmp / "rng" / f"rank_{_rank():05d}.pt")
        _barrier()
        if _rank() == 0:
            record = {"step": step, **trainer_state, "layout": layout}
            (tmp / "trainer_state.json").write_text(json.dumps(record, indent=1))
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            _write_text_atomic(self.root / "latest", name)
            self._prune()
        _barrier()
        return final

    def _prune(self) -> None:
        complete = sorted(p for p in self.root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
        for old in complete[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    # ------------------------------------------------------------------ load
    def latest(self) -> Path | None:
        return latest_complete_step(self.root)

    def load(self, path: Path, model_chunk: torch.nn.Module, optimizer) -> Resumed:
        """Collective: restore model, optimizer and this rank's RNG; return the trainer state. Refuses a layout
        change the optimizer state cannot follow (:func:`check_resume_layout`) before reading any tensor."""
        from megatron.core import dist_checkpointing

        trainer_state = json.loads((path / "trainer_state.json").read_text())
        check_resume_layout(path, trainer_state.get("layout"), current_layout(optimizer))
        model_sd = model_chunk.sharded_state_dict()
        sharded = {"model": model_sd, "optimizer": optimizer.sharded_state_dict(model_sd, is_loading=True)}
        with torch.no_grad():
            state = dist_checkpointing.load(sharded, str(path / "model_optim"))
        model_chunk.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng_file = path / "rng" / f"rank_{_rank():05d}.pt"
        if not rng_file.is_file():
            raise RuntimeError(f"{rng_file}: missing; this checkpoint was written by a job with a different number "
                               "of ranks (exact resume needs the same world size)")
        _set_rng_state(torch.load(rng_file, weights_only=False))
        return Resumed(step=trainer_state["step"], trainer_state=trainer_state, path=path)

