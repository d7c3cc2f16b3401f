"""Which weights to evaluate, resolved (and checked) before any rank starts, then loaded on every rank:

* ``--hf DIR``: a Hugging Face Qwen2/Qwen2.5 checkpoint (its tokenizer is the default);
* ``--mcore DIR``: a Megatron model checkpoint written by ``python -m srpo_mcore.convert`` or by the trainer:
  ``run_dir/checkpoints/step_N`` (the model half of its ``model_optim`` checkpoint), or ``run_dir`` itself for
  its latest checkpoint. Trainer checkpoints take the architecture from ``run_dir/config.yaml`` and default the
  tokenizer to that run's ``train.init_checkpoint``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from srpo_mcore.config import RUN_CONFIG_IN_HF_EXPORT
from srpo_mcore.config.model import DTYPES, ModelConfig


@dataclass(frozen=True)
class PolicyCheckpoint:
    kind: str  # "hf" | "mcore" (convert's model checkpoint) | "trainer" (model_optim of a trainer checkpoint)
    path: Path  # the directory the weights load from
    model: ModelConfig
    run_config: Path | None = None  # the run's config: trainer checkpoints, and HF exports written by the trainer
    tokenizer: Path | None = None  # the default tokenizer directory, if the checkpoint implies one


def resolve_hf(path: str | Path, dtype: str | None) -> PolicyCheckpoint:
    from srpo_mcore.model.hf_checkpoint import HFCheckpointReader, model_config_from_hf

    path = Path(path)
    saved = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    saved_dtype = saved.get("torch_dtype") or saved.get("dtype")
    model = model_config_from_hf(path, params_dtype=dtype or (saved_dtype if saved_dtype in DTYPES else "float32"))
    HFCheckpointReader(path, model).check_complete()
    run_config = path / RUN_CONFIG_IN_HF_EXPORT
    return PolicyCheckpoint("hf", path, model, run_config if run_config.is_file() else None, tokenizer=path)


def resolve_mcore(path: str | Path, dtype: str | None) -> PolicyCheckpoint:
    from srpo_mcore.model.mcore_checkpoint import MODEL_CONFIG_FILE, read_model_config

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such checkpoint directory")
    if (path / MODEL_CONFIG_FILE).is_file():
        ckpt = PolicyCheckpoint("mcore", path, read_model_config(path))
    else:
        ckpt = _resolve_trainer(path)
    return replace(ckpt, model=replace(ckpt.model, params_dtype=dtype)) if dtype else ckpt


def _resolve_trainer(path: Path) -> PolicyCheckpoint:
    from srpo_mcore.config import load_config
    from srpo_mcore.model.trainer_checkpoint import latest_complete_step

    step = path
    if not (path / "model_optim").is_dir():
        latest = latest_complete_step(path / "checkpoints")
        if latest is None:
            raise FileNotFoundError(f"{path}: neither a Megatron model checkpoint (no srpo_model_config.json), nor a "
                                    "trainer checkpoint (no model_optim/), nor a run directory (no checkpoints/latest)")
        step = latest
    run_config = step.parent.parent / "config.yaml"
    if not run_config.is_file():
        raise FileNotFoundError(f"{run_config}: missing; a trainer checkpoint takes its architecture from its run's "
                                "config.yaml")
    cfg = load_config(run_config)
    return PolicyCheckpoint("trainer", step / "model_optim", cfg.model, run_config,
                            Path(cfg.train.init_checkpoint) if cfg.train.init_checkpoint else None)


def load_weights(ckpt: PolicyCheckpoint, model_chunk, state) -> None:
    """Fill this rank's shard of ``model_chunk`` (collective for Megatron checkpoints)."""
    if ckpt.kind == "hf":
        from srpo_mcore.model.hf_checkpoint import load_hf_into_model

        load_hf_into_model(model_chunk, ckpt.model, ckpt.path, state.tp_rank, state.tp_size)
    elif ckpt.kind == "mcore":
        from srpo_mcore.model.mcore_checkpoint import load_model_checkpoint

        load_model_checkpoint(model_chunk, ckpt.path)
    else:
        from srpo_mcore.model.trainer_checkpoint import load_model_weights

        load_model_weights(model_chunk, ckpt.path)
