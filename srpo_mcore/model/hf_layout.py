"""Qwen2 parameter layout: Hugging Face names and tensors <-> Megatron-Core (local or TE spec) shards.

Megatron fuses and splits differently from HF:

* ``linear_qkv`` (weight and bias) stacks, per KV group g, ``[q heads of group g; k_g; v_g]``, groups in order;
  TP ranks hold whole groups (rows). A plain ``cat(q, k, v)`` is wrong.
* ``linear_fc1`` on TP rank r is ``[gate shard r; up shard r]``, not a slice of ``cat(gate, up)``.
* Row-split over TP: embedding, output layer, ``linear_qkv``, ``linear_fc1``. Column-split: ``linear_proj``
  (o_proj), ``linear_fc2`` (down_proj). Norms are replicated.
* The embedding and output layer carry ``padded_vocab_size`` rows; rows past ``vocab_size`` are zero and are
  dropped on export.

All functions here are pure tensor reshuffles (no communication), so they are unit-testable on one process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from srpo_mcore.config.model import ModelConfig

# Megatron local-layer name (after the ``decoder.layers.{i}.`` prefix) -> kind of mapping.
_LAYER_PARAMS = {
    "input_layernorm.weight": "input_norm",
    "self_attention.linear_qkv.layer_norm_weight": "input_norm",  # TE spec fuses the norm into linear_qkv
    "self_attention.linear_qkv.weight": "qkv_weight",
    "self_attention.linear_qkv.bias": "qkv_bias",
    "self_attention.linear_proj.weight": "o_proj",
    "pre_mlp_layernorm.weight": "post_attn_norm",
    "mlp.linear_fc1.layer_norm_weight": "post_attn_norm",  # TE spec
    "mlp.linear_fc1.weight": "gate_up",
    "mlp.linear_fc2.weight": "down_proj",
}
_LAYER_RE = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class ParamMap:
    """How one Megatron parameter relates to HF tensors.

    kind: one of embed, lm_head, final_norm, input_norm, qkv_weight, qkv_bias, o_proj, post_attn_norm,
    gate_up, down_proj. ``layer`` is the global (HF) layer index or None.
    """

    kind: str
    layer: int | None
    hf_names: tuple[str, ...]

    @property
    def tp_split_dim(self) -> int | None:
        """Dim along which Megatron splits this parameter over TP (None: replicated)."""
        if self.kind in ("embed", "lm_head", "qkv_weight", "qkv_bias", "gate_up"):
            return 0
        if self.kind in ("o_proj", "down_proj"):
            return 1
        return None


def param_map(mcore_name: str, layer_offset: int) -> ParamMap:
    """Map a Megatron parameter name of this PP stage to its HF tensors. ``layer_offset`` is the global index
    of this stage's first layer."""
    if mcore_name == "embedding.word_embeddings.weight":
        return ParamMap("embed", None, ("model.embed_tokens.weight",))
    if mcore_name == "output_layer.weight":
        return ParamMap("lm_head", None, ("lm_head.weight",))
    if mcore_name == "decoder.final_layernorm.weight":
        return ParamMap("final_norm", None, ("model.norm.weight",))
    match = _LAYER_RE.match(mcore_name)
    if not match or match.group(2) not in _LAYER_PARAMS:
        raise KeyError(f"no HF mapping for Megatron parameter '{mcore_name}'")
    layer = layer_offset + int(match.group(1))
    kind = _LAYER_PARAMS[match.group(2)]
    p = f"model.layers.{layer}."
    names = {
        "input_norm": (p + "input_layernorm.weight",),
        "qkv_weight": (p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"),
        "qkv_bias": (p + "self_attn.q_proj.bias", p + "self_attn.k_proj.bias", p + "self_attn.v_proj.bias"),
        "o_proj": (p + "self_attn.o_proj.weight",),
        "post_attn_norm": (p + "post_attention_layernorm.weight",),
        "gate_up": (p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"),
        "down_proj": (p + "mlp.down_proj.weight",),
    }[kind]
    return ParamMap(kind, layer, names)


# --------------------------------------------------------------------------------------- HF -> Megatron shard


def _qkv_grouped(model: ModelConfig, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[groups, (heads_per_group + 2) * head_dim, ...] in Megatron's per-group order."""
    g, hd = model.num_query_groups, model.head_dim
    tail = q.shape[1:]
    q = q.reshape(g, (model.num_attention_heads // g) * hd, *tail)
    k = k.reshape(g, hd, *tail)
    v = v.reshape(g, hd, *tail)
    return torch.cat([q, k, v], dim=1)


def to_mcore_shard(pm: ParamMap, hf: list[torch.Tensor], model: ModelConfig, tp_rank: int, tp_size: int
                   ) -> torch.Tensor:
    """This TP rank's Megatron shard, built from the HF tensors named by ``pm.hf_names`` (in that order)."""
    if pm.kind in ("embed", "lm_head"):
        (w,) = hf
        padded = torch.zeros(model.padded_vocab_size, w.shape[1], dtype=w.dtype)
        padded[: w.shape[0]] = w
        return padded.chunk(tp_size, dim=0)[tp_rank]
    if pm.kind in ("qkv_weight", "qkv_bias"):
        grouped = _qkv_grouped(model, *hf)
        groups = grouped.chunk(tp_size, dim=0)[tp_rank]
        return groups.reshape(-1, *grouped.shape[2:])
    if pm.kind == "gate_up":
        gate, up = hf
        return torch.cat([gate.chunk(tp_size, dim=0)[tp_rank], up.chunk(tp_size, dim=0)[tp_rank]], dim=0)
    (w,) = hf
    if pm.tp_split_dim is None:
        return w
    return w.chunk(tp_size, dim=pm.tp_split_dim)[tp_rank]


# -------------------------------------------------------------------------------------- Megatron shards -> HF


def to_hf_tensors(pm: ParamMap, shards: list[torch.Tensor], model: ModelConfig) -> dict[str, torch.Tensor]:
    """HF tensors from the Megatron shards of all TP ranks (in TP-rank order; one shard if replicated)."""
    if pm.kind in ("embed", "lm_head"):
        full = torch.cat(shards, dim=0)
        return {pm.hf_names[0]: full[: model.vocab_size]}
    if pm.kind in ("qkv_weight", "qkv_bias"):
        g, hd = model.num_query_groups, model.head_dim
        hpg = model.num_attention_heads // g
        full = torch.cat(shards, dim=0)
        grouped = full.reshape(g, (hpg + 2) * hd, *full.shape[1:])
        q, k, v = grouped.split([hpg * hd, hd, hd], dim=1)
        return {name: t.reshape(-1, *full.shape[1:]) for name, t in zip(pm.hf_names, (q, k, v))}
    if pm.kind == "gate_up":
        halves = [s.chunk(2, dim=0) for s in shards]
        gate = torch.cat([h[0] for h in halves], dim=0)
        up = torch.cat([h[1] for h in halves], dim=0)
        return {pm.hf_names[0]: gate, pm.hf_names[1]: up}
    if pm.tp_split_dim is None:
        return {pm.hf_names[0]: shards[0]}
    return {pm.hf_names[0]: torch.cat(shards, dim=pm.tp_split_dim)}


def expected_hf_shape(name: str, model: ModelConfig) -> tuple[int, ...]:
    """Shape an HF Qwen2 checkpoint must have for ``name`` (used to name mis-shaped tensors on load)."""
    h, hd = model.hidden_size, model.head_dim
    q_rows, kv_rows = model.num_attention_heads * hd, model.num_query_groups * hd
    table = {
        "model.embed_tokens.weight": (model.vocab_size, h),
        "lm_head.weight": (model.vocab_size, h),
        "model.norm.weight": (h,),
    }
    if name in table:
        return table[name]
    suffix = name.split(".", 3)[3]  # after model.layers.{i}.
    return {
        "input_layernorm.weight": (h,),
        "post_attention_layernorm.weight": (h,),
        "self_attn.q_proj.weight": (q_rows, h),
        "self_attn.k_proj.weight": (kv_rows, h),
        "self_attn.v_proj.weight": (kv_rows, h),
        "self_attn.q_proj.bias": (q_rows,),
        "self_attn.k_proj.bias": (kv_rows,),
        "self_attn.v_proj.bias": (kv_rows,),
        "self_attn.o_proj.weight": (h, q_rows),
        "mlp.gate_proj.weight": (model.ffn_hidden_size, h),
        "mlp.up_proj.weight": (model.ffn_hidden_size, h),
        "mlp.down_proj.weight": (h, model.ffn_hidden_size),
    }[suffix]
