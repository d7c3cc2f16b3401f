"""Read and write Hugging Face Qwen2 checkpoints from/to a (TP/PP-sharded) Megatron model, tensor by tensor.

Reading streams one HF tensor at a time from safetensors (lazy ``safe_open``); writing gathers one Megatron
parameter over TP at a time and writes one safetensors file per layer, so no rank ever holds more than one full
layer beyond its own shards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist

from srpo_mcore.config.model import ModelConfig
from srpo_mcore.model.dtypes import torch_dtype
from srpo_mcore.model.hf_layout import ParamMap, expected_hf_shape, param_map, to_hf_tensors, to_mcore_shard


class CheckpointError(ValueError):
    """An HF checkpoint is not a usable Qwen2 checkpoint; the message names the file or tensor."""


# ------------------------------------------------------------------------------------------------ configs


def model_config_from_hf(hf_dir: str | Path, **overrides) -> ModelConfig:
    """A :class:`ModelConfig` from an HF ``config.json``; refuses anything that is not Qwen2."""
    path = Path(hf_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (not an HF checkpoint directory)")
    cfg = json.loads(path.read_text())
    if cfg.get("model_type") != "qwen2":
        raise CheckpointError(f"{path}: model_type is {cfg.get('model_type')!r}, not 'qwen2' (only Qwen2/Qwen2.5 "
                              "checkpoints are supported)")
    rope = cfg.get("rope_parameters") or {}
    fields = dict(
        name=cfg.get("_name_or_path") or Path(hf_dir).name,
        num_layers=cfg["num_hidden_layers"], hidden_size=cfg["hidden_size"],
        ffn_hidden_size=cfg["intermediate_size"], num_attention_heads=cfg["num_attention_heads"],
        num_query_groups=cfg.get("num_key_value_heads", cfg["num_attention_heads"]),
        vocab_size=cfg["vocab_size"], max_position_embeddings=cfg["max_position_embeddings"],
        rotary_base=float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))),
        norm_epsilon=cfg["rms_norm_eps"], tie_word_embeddings=cfg.get("tie_word_embeddings", False),
    )
    fields.update(overrides)
    model = ModelConfig(**fields)
    model.validate()
    return model


def hf_config_dict(model: ModelConfig, dtype: str) -> dict:
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": model.hidden_size,
        "intermediate_size": model.ffn_hidden_size,
        "num_hidden_layers": model.num_layers,
        "num_attention_heads": model.num_attention_heads,
        "num_key_value_heads": model.num_query_groups,
        "vocab_size": model.vocab_size,
        "max_position_embeddings": model.max_position_embeddings,
        "rope_theta": model.rotary_base,
        "rope_parameters": {"rope_theta": model.rotary_base, "rope_type": "default"},
        "rms_norm_eps": model.norm_epsilon,
        "tie_word_embeddings": model.tie_word_embeddings,
        "hidden_act": "silu",
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "torch_dtype": dtype,
        "dtype": dtype,
    }


# ---------------------------------------------------------------------------------------------- reading


class HFCheckpointReader:
    """Lazy access to the tensors of an HF safetensors checkpoint (single file or sharded with an index)."""

    def __init__(self, hf_dir: str | Path, model: ModelConfig):
        from safetensors import safe_open

        self.dir = Path(hf_dir)
        self.model = model
        index = self.dir / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
        elif (self.dir / "model.safetensors").is_file():
            with safe_open(self.dir / "model.safetensors", framework="pt") as f:
                weight_map = {k: "model.safetensors" for k in f.keys()}
        else:
            raise CheckpointError(f"{self.dir}: no model.safetensors or model.safetensors.index.json")
        self.weight_map = weight_map
        self._open = safe_open
        self._handles: dict[str, object] = {}

    def check_complete(self) -> None:
        """Check every tensor a Qwen2 model of this config needs is present with the right shape, reading only
        the safetensors headers (cheap: done before any rank starts)."""
        for name in hf_tensor_names(self.model):
            if name not in self.weight_map:
                raise CheckpointError(f"{self.dir}: tensor '{name}' is missing")
            file = self.weight_map[name]
            if file not in self._handles:
                self._handles[file] = self._open(self.dir / file, framework="pt")
            shape = tuple(self._handles[file].get_slice(name).get_shape())
            expected = expected_hf_shape(name, self.model)
            if shape != expected:
                raise CheckpointError(f"{self.dir / file}: tensor '{name}' has shape {shape}, expected {expected} "
                                      "for this Qwen2 config")

    def get(self, name: str) -> torch.Tensor:
        if name not in self.weight_map:
            raise CheckpointError(f"{self.dir}: tensor '{name}' is missing")
        file = self.weight_map[name]
        if file not in self._handles:
            self._handles[file] = self._open(self.dir / file, framework="pt")
        tensor = self._handles[file].get_tensor(name)
        expected = expected_hf_shape(name, self.model)
        if tuple(tensor.shape) != expected:
            raise CheckpointError(f"{self.dir / file}: tensor '{name}' has shape {tuple(tensor.shape)}, expected "
                                  f"{expected} for this Qwen2 config")
        return tensor


def hf_tensor_names(model: ModelConfig) -> list[str]:
    """Every tensor name of an HF Qwen2 checkpoint with this config."""
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    if not model.tie_word_embeddings:
        names.append("lm_head.weight")
    per_layer = ["input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.o_proj.weight",
                 "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"]
    per_layer += [f"self_attn.{p}_proj.{k}" for p in "qkv" for k in ("weight", "bias")]
    for i in range(model.num_layers):
        names += [f"model.layers.{i}.{n}" for n in per_layer]
    return names


def layer_offset(model_chunk: torch.nn.Module) -> int:
    """Global index of this PP stage's first transformer layer."""
    layers = model_chunk.decoder.layers
    return layers[0].layer_number - 1 if len(layers) else 0


def _hf_sources(pm: ParamMap, model: ModelConfig) -> tuple[str, ...]:
    # A tied output layer on a later PP stage is a copy of the input embedding.
    if pm.kind == "lm_head" and model.tie_word_embeddings:
        return ("model.embed_tokens.weight",)
    return pm.hf_names


@torch.no_grad()
def load_hf_into_model(model_chunk: torch.nn.Module, model: ModelConfig, hf_dir: str | Path,
                       tp_rank: int, tp_size: int) -> None:
    """Fill this rank's shards of ``model_chunk`` from an HF checkpoint, reading one tensor at a time."""
    reader = HFCheckpointReader(hf_dir, model)
    offset = layer_offset(model_chunk)
    for name, param in model_chunk.named_parameters():
        pm = param_map(name, offset)
        hf = [reader.get(n).to(torch.float32) for n in _hf_sources(pm, model)]
        shard = to_mcore_shard(pm, hf, model, tp_rank, tp_size)
        if tuple(shard.shape) != tuple(param.shape):
            raise CheckpointError(f"{hf_dir}: '{name}' shard has shape {tuple(shard.shape)} but the model "
                                  f"expects {tuple(param.shape)}")
        param.copy_(shard.to(param.dtype))


# ---------------------------------------------------------------------------------------------- writing


def _gather_tp(tensor: torch.Tensor, tp_group, tp_size: int) -> list[torch.Tensor]:
    if tp_size == 1:
        return [tensor]
    shards = [torch.empty_like(tensor) for _ in range(tp_size)]
    dist.all_gather(shards, tensor.contiguous(), group=tp_group)
    return shards


@torch.no_grad()
def iter_hf_tensors(model_chunk: torch.nn.Module, model: ModelConfig, tp_group, tp_size: int
                    ) -> Iterator[tuple[int | None, dict[str, torch.Tensor]]]:
    """Yield ``(layer or None, {hf_name: full tensor})`` for this PP stage, one Megatron parameter at a time,
    gathered over TP (a collective: every TP rank must iterate). A tied output layer is skipped."""
    offset = layer_offset(model_chunk)
    for name, param in model_chunk.named_parameters():
        pm = param_map(name, offset)
        if pm.kind == "lm_head" and model.tie_word_embeddings:
            continue
        shards = _gather_tp(param.detach(), tp_group, tp_size) if pm.tp_split_dim is not None else [param.detach()]
        yield pm.layer, to_hf_tensors(pm, shards, model)


def _file_for(layer: int | None, hf_name: str) -> str:
    if layer is not None:
        return f"model-layer-{layer:05d}.safetensors"
    return "model-embed.safetensors" if "embed_tokens" in hf_name else "model-head.safetensors"


def save_hf_checkpoint(model_chunk: torch.nn.Module, model: ModelConfig, out_dir: str | Path, *, dtype: str,
                       tp_group, tp_size: int, tp_rank: int, dp_rank: int) -> None:
    """Write an HF checkpoint: each PP stage's (TP 0, DP 0) rank writes its layers, one file per layer, then
    global rank 0 writes ``config.json`` and the index. Collective over the whole job."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer = tp_rank == 0 and dp_rank == 0
    pending: dict[str, dict[str, torch.Tensor]] = {}

    def flush(file: str) -> None:
        tensors = {k: v.to(torch_dtype(dtype)).contiguous() for k, v in pending.pop(file).items()}
        tmp = out / (file + ".tmp")
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, out / file)

    current = None
    for layer, tensors in iter_hf_tensors(model_chunk, model, tp_group, tp_size):
        if not writer:
            continue
        for hf_name, tensor in tensors.items():
            file = _file_for(layer, hf_name)
            if current is not None and file != current and current in pending:
                flush(current)
            current = file
            pending.setdefault(file, {})[hf_name] = tensor
    for file in list(pending):
        flush(file)
    if dist.is_initialized():
        dist.barrier()
    if not dist.is_initialized() or dist.get_rank() == 0:
        from safetensors import safe_open

        weight_map = {}
        for shard in sorted(out.glob("model-*.safetensors")):
            with safe_open(shard, framework="pt") as f:
                weight_map.update({k: shard.name for k in f.keys()})
        (out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
        (out / "config.json").write_text(json.dumps(hf_config_dict(model, dtype), indent=2))
    if dist.is_initialized():
        dist.barrier()
