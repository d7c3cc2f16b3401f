"""The weight sync's plan, fixed at construction: every Megatron parameter of every PP stage (a
:class:`ParamSlot`), mapped to its HF tensors and grouped into whole vLLM layers, packed stage by stage into
buckets (:class:`Bucket`) of ``rollout.sync_bucket_mb`` (see weight_sync.py for how a sync runs)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from srpo_mcore.config.model import ModelConfig
from srpo_mcore.model.hf_checkpoint import layer_offset
from srpo_mcore.model.hf_layout import ParamMap, expected_hf_shape, param_map

NamedTensors = list[tuple[str, torch.Tensor]]
_VLLM_FUSED = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj",
               "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj"}


def vllm_layer_of(hf_name: str) -> str:
    """The vLLM module an HF tensor loads into (``...self_attn.q_proj.bias`` -> ``...self_attn.qkv_proj``)."""
    module = hf_name.rpartition(".")[0]
    parent, _, leaf = module.rpartition(".")
    return f"{parent}.{_VLLM_FUSED.get(leaf, leaf)}"


@dataclass(frozen=True)
class ParamSlot:
    """One Megatron parameter of one PP stage (shapes are the same on every TP rank of that stage)."""

    stage: int
    name: str
    layer_offset: int
    local_shape: tuple[int, ...]
    hf_shapes: tuple[tuple[int, ...], ...]

    @property
    def param_map(self) -> ParamMap:
        return param_map(self.name, self.layer_offset)

    @property
    def local_numel(self) -> int:
        return numel(self.local_shape)

    @property
    def hf_numel(self) -> int:
        return sum(numel(s) for s in self.hf_shapes)


@dataclass(frozen=True)
class Bucket:
    """Whole vLLM layers of one PP stage, moved and loaded together."""

    index: int
    stage: int
    slots: tuple[ParamSlot, ...]

    @property
    def hf_numel(self) -> int:
        return sum(s.hf_numel for s in self.slots)

    @property
    def local_numel(self) -> int:
        return sum(s.local_numel for s in self.slots)

    def describe(self) -> str:
        names = [n for s in self.slots for n in s.param_map.hf_names]
        return f"bucket {self.index} (PP stage {self.stage}: {names[0]} .. {names[-1]}, {len(names)} tensors)"


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def unwrap_model(model_chunk: torch.nn.Module) -> torch.nn.Module:
    """The GPTModel inside Megatron DDP / Float16Module wrappers."""
    while isinstance(inner := getattr(model_chunk, "module", None), torch.nn.Module):
        model_chunk = inner
    return model_chunk


def local_slots(model_chunk: torch.nn.Module, model: ModelConfig, stage: int) -> list[ParamSlot]:
    """This stage's parameters in ``named_parameters`` order (a tied output layer is skipped: vLLM ties it)."""
    offset = layer_offset(model_chunk)
    slots = []
    for name, param in model_chunk.named_parameters():
        pm = param_map(name, offset)
        if pm.kind == "lm_head" and model.tie_word_embeddings:
            continue
        slots.append(ParamSlot(stage, name, offset, tuple(param.shape),
                               tuple(expected_hf_shape(n, model) for n in pm.hf_names)))
    return slots


def plan_buckets(slots: list[ParamSlot], bucket_numel: int) -> list[Bucket]:
    """Pack whole vLLM layers into buckets of at most ``bucket_numel`` HF elements, one PP stage per bucket."""
    layers: dict[tuple[int, str], list[ParamSlot]] = {}
    for slot in slots:
        layers.setdefault((slot.stage, vllm_layer_of(slot.param_map.hf_names[0])), []).append(slot)
    buckets: list[Bucket] = []
    current: list[ParamSlot] = []
    for (stage, _), layer in layers.items():
        size = sum(s.hf_numel for s in layer)
        if current and (current[0].stage != stage or sum(s.hf_numel for s in current) + size > bucket_numel):
            buckets.append(Bucket(len(buckets), current[0].stage, tuple(current)))
            current = []
        current.extend(layer)
    if current:
        buckets.append(Bucket(len(buckets), current[0].stage, tuple(current)))
    return buckets
