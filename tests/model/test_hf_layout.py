"""The HF <-> Megatron layout functions, checked against hand-built fused tensors (no Megatron needed)."""

import pytest
import torch

from srpo_mcore.config.model import ModelConfig
from srpo_mcore.model.hf_layout import expected_hf_shape, param_map, to_hf_tensors, to_mcore_shard

MODEL = ModelConfig(num_layers=2, hidden_size=8, ffn_hidden_size=12, num_attention_heads=4, num_query_groups=2,
                    vocab_size=10, make_vocab_size_divisible_by=4)


def hf_qkv():
    hd = MODEL.head_dim  # 2
    q = torch.arange(4 * hd * 8, dtype=torch.float32).reshape(4 * hd, 8)
    k = 1000 + torch.arange(2 * hd * 8, dtype=torch.float32).reshape(2 * hd, 8)
    v = 2000 + torch.arange(2 * hd * 8, dtype=torch.float32).reshape(2 * hd, 8)
    return q, k, v


def test_qkv_is_grouped_per_kv_head():
    q, k, v = hf_qkv()
    pm = param_map("decoder.layers.0.self_attention.linear_qkv.weight", 0)
    fused = to_mcore_shard(pm, [q, k, v], MODEL, 0, 1)
    hd = MODEL.head_dim
    # Group 0: q heads 0-1, k head 0, v head 0; then group 1.
    expected = torch.cat([q[0:2 * hd], k[0:hd], v[0:hd], q[2 * hd:4 * hd], k[hd:2 * hd], v[hd:2 * hd]])
    assert torch.equal(fused, expected)
    # TP2: each rank holds one whole group.
    assert torch.equal(to_mcore_shard(pm, [q, k, v], MODEL, 1, 2), expected[expected.shape[0] // 2:])
    assert not torch.equal(fused, torch.cat([q, k, v]))


def test_gate_up_interleaves_per_tp_rank():
    gate = torch.arange(12 * 8, dtype=torch.float32).reshape(12, 8)
    up = -gate
    pm = param_map("decoder.layers.1.mlp.linear_fc1.weight", 0)
    shard1 = to_mcore_shard(pm, [gate, up], MODEL, 1, 2)
    assert torch.equal(shard1, torch.cat([gate[6:], up[6:]]))


@pytest.mark.parametrize("tp", [1, 2])
@pytest.mark.parametrize("name", [
    "embedding.word_embeddings.weight", "output_layer.weight", "decoder.final_layernorm.weight",
    "decoder.layers.0.input_layernorm.weight", "decoder.layers.0.self_attention.linear_qkv.weight",
    "decoder.layers.0.self_attention.linear_qkv.bias", "decoder.layers.1.self_attention.linear_proj.weight",
    "decoder.layers.0.pre_mlp_layernorm.weight", "decoder.layers.1.mlp.linear_fc1.weight",
    "decoder.layers.1.mlp.linear_fc2.weight",
])
def test_round_trip_is_exact(name, tp):
    pm = param_map(name, layer_offset=3)
    gen = torch.Generator().manual_seed(0)
    hf = [torch.randn(expected_hf_shape(n, MODEL), generator=gen) for n in pm.hf_names]
    shards = [to_mcore_shard(pm, hf, MODEL, r, tp) for r in range(tp)] if pm.tp_split_dim is not None \
        else [to_mcore_shard(pm, hf, MODEL, 0, tp)]
    back = to_hf_tensors(pm, shards, MODEL)
    assert list(back) == list(pm.hf_names)
    for n, t in zip(pm.hf_names, hf):
        assert torch.equal(back[n], t), n


def test_padded_vocab_rows_are_zero_and_dropped():
    pm = param_map("embedding.word_embeddings.weight", 0)
    w = torch.randn(10, 8)
    shard = to_mcore_shard(pm, [w], MODEL, 1, 2)  # padded 12 rows, rank 1 holds rows 6..11
    assert shard.shape == (6, 8) and torch.equal(shard[4:], torch.zeros(2, 8))


def test_layer_offset_maps_pipeline_stage_layers():
    assert param_map("decoder.layers.1.mlp.linear_fc2.weight", 2).hf_names == ("model.layers.3.mlp.down_proj.weight",)


def test_unknown_parameter_is_named():
    with pytest.raises(KeyError, match="decoder.layers.0.mystery.weight"):
        param_map("decoder.layers.0.mystery.weight", 0)
