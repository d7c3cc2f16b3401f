"""Megatron distributed checkpoints (torch_dist) of the model: TP/PP-independent on disk.

A checkpoint saved at one TP/PP layout loads at any other. Writes go to ``<dir>.tmp`` and are renamed when
complete, so a crash never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist

from srpo_mcore.config.model import ModelConfig

MODEL_CONFIG_FILE = "srpo_model_config.json"


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def save_model_checkpoint(model_chunk: torch.nn.Module, model: ModelConfig, ckpt_dir: str | Path) -> Path:
    """Save this job's model shards as one distributed checkpoint (collective)."""
    from megatron.core import dist_checkpointing

    final = Path(ckpt_dir)
    tmp = final.with_name(final.name + ".tmp")
    if _rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    dist_checkpointing.save(model_chunk.sharded_state_dict(), str(tmp))
    _barrier()
    if _rank() == 0:
        (tmp / MODEL_CONFIG_FILE).write_text(json.dumps(asdict(model), indent=2))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    _barrier()
    return final


def read_model_config(ckpt_dir: str | Path) -> ModelConfig:
    path = Path(ckpt_dir) / MODEL_CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; {ckpt_dir} is not an srpo-mcore Megatron checkpoint")
    model = ModelConfig(**json.loads(path.read_text()))
    model.validate()
    return model


def load_model_checkpoint(model_chunk: torch.nn.Module, ckpt_dir: str | Path) -> None:
    """Load a distributed checkpoint into this rank's shards, whatever layout it was saved at (collective)."""
    from megatron.core import dist_checkpointing

    if not Path(ckpt_dir).is_dir():
        raise FileNotFoundError(f"{ckpt_dir}: no such checkpoint directory")
    state = dist_checkpointing.load(model_chunk.sharded_state_dict(), str(ckpt_dir))
    model_chunk.load_state_dict(state)
