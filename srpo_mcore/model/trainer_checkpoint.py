"""The read side of a trainer checkpoint that evaluation and export need: which step is the newest complete one,
and the model half of its Megatron checkpoint at any TP/PP layout (no optimizer state).

The layout is written by ``srpo_mcore/train/checkpoint.py`` (``CheckpointManager``, which documents it); it lives
here, beside the model code, so that evaluation loads trainer checkpoints without importing the trainer.
"""

from __future__ import annotations

from pathlib import Path

import torch


def latest_complete_step(checkpoints_dir: str | Path) -> Path | None:
    """The step directory named by ``<checkpoints_dir>/latest``, or ``None`` when there is no pointer; raises
    when the pointer names an incomplete checkpoint (no ``trainer_state.json``)."""
    pointer = Path(checkpoints_dir) / "latest"
    if not pointer.is_file():
        return None
    path = Path(checkpoints_dir) / pointer.read_text().strip()
    if not (path / "trainer_state.json").is_file():
        raise RuntimeError(f"{pointer} names {path.name}, which is incomplete; remove the pointer to start over")
    return path


def load_model_weights(model_chunk: torch.nn.Module, model_optim: str | Path) -> None:
    """Only the model half of a training checkpoint (``step_N/model_optim``), at any TP/PP layout: evaluation
    and export need no optimizer state."""
    from megatron.core import dist_checkpointing

    with torch.no_grad():
        state = dist_checkpointing.load({"model": model_chunk.sharded_state_dict()}, str(model_optim))
    model_chunk.load_state_dict(state["model"])
