"""Qwen2.5 on Megatron-Core: config -> TransformerConfig -> GPTModel.

What a layer is made of comes from a Megatron ``ModuleSpec``: Transformer Engine's (fused attention /
flash-attn) when TE is importable on a GPU, Megatron's local spec otherwise, with :class:`RMSNorm` for every norm (the
local spec's torch norm refuses sequence parallelism). How it runs (TP/PP, recompute, sequence parallel) comes from
the parallel config.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
import torch.nn.functional as F

from srpo_mcore import platform
from srpo_mcore.config.base import ConfigError
from srpo_mcore.config.model import ModelConfig, ParallelConfig
from srpo_mcore.model.dtypes import torch_dtype

logger = logging.getLogger(__name__)

def transformer_engine_available() -> bool:
    if not platform.has_cuda():
        return False
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_transformer_impl(model: ModelConfig) -> str:
    if model.transformer_impl == "auto":
        return "transformer_engine" if transformer_engine_available() else "local"
    if model.transformer_impl == "transformer_engine" and not transformer_engine_available():
        raise ConfigError("model.transformer_impl", "transformer_engine was requested but TE is not importable "
                          "on this machine (it needs a CUDA GPU); use 'local' or 'auto'")
    return model.transformer_impl


def transformer_config(model: ModelConfig, parallel: ParallelConfig):
    """Megatron ``TransformerConfig`` for a Qwen2 decoder."""
    from megatron.core.transformer import TransformerConfig

    dtype = torch_dtype(model.params_dtype)
    recompute: dict[str, str | int] = {}
    if parallel.recompute_granularity == "selective":
        recompute = {"recompute_granularity": "selective"}
    elif parallel.recompute_granularity == "full":
        recompute = {"recompute_granularity": "full", "recompute_method": "uniform",
                     "recompute_num_layers": parallel.recompute_num_layers}
    return TransformerConfig(
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        ffn_hidden_size=model.ffn_hidden_size,
        num_attention_heads=model.num_attention_heads,
        num_query_groups=model.num_query_groups,
        kv_channels=model.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=model.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=model.add_qkv_bias,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=model.init_method_std,
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        apply_rope_fusion=False,
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        tensor_model_parallel_size=parallel.tensor_model_parallel_size,
        pipeline_model_parallel_size=parallel.pipeline_model_parallel_size,
        sequence_parallel=parallel.sequence_parallel,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        # Rollout batches have variable lengths; Megatron's config check wants the all-to-all dispatcher
        # whenever sequence lengths vary under PP, even for a dense model.
        variable_seq_lengths=True,
        # Losses return (sum over tokens, token count); Megatron divides the gradients by the token count summed
        # over micro-batches and data-parallel ranks: the token-level normalisation SRPO uses.
        calculate_per_token_loss=True,
        moe_token_dispatcher_type="alltoall",
        **recompute,
        **platform.megatron_cpu_config_overrides(),
    )


class RMSNorm(torch.nn.RMSNorm):
    """The local spec's norm: torch's RMSNorm, built as Megatron's ``WrappedTorchNorm`` builds it (same numerics), that
    also runs under sequence parallelism. There each TP rank normalises its own slice of the sequence with the
    replicated weight, so the weight's gradient is partial on each rank; ``weight.sequence_parallel`` makes Megatron's
    ``finalize_model_grads`` sum it over the TP group, as it does for Transformer Engine's norms."""

    def __init__(self, config, hidden_size: int, eps: float = 1e-5, **unused):
        super().__init__(hidden_size, eps=eps, dtype=config.params_dtype)  # bf16 params: bf16 norms, like the rest
        self.weight.sequence_parallel = config.sequence_parallel


def layer_spec(model: ModelConfig, config):
    """What this PP stage's decoder is made of (``config``: its Megatron ``TransformerConfig``)."""
    from megatron.core.models.gpt import gpt_layer_specs
    from megatron.core.transformer.transformer_block import (
        TransformerBlockSubmodules,
        get_num_layers_to_build,
    )

    if resolve_transformer_impl(model) == "transformer_engine":
        return gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec()
    from srpo_mcore.model.packed_attention import PackedDotProductAttention

    layer = gpt_layer_specs.get_gpt_layer_local_spec(normalization="RMSNorm")
    # the CPU side of the two kernel seams: an RMSNorm that supports sequence parallelism, and the local core
    # attention extended to packed (THD) micro-batches (Transformer Engine's spec, above, has both)
    attention = layer.submodules.self_attention
    attention.submodules = dataclasses.replace(attention.submodules, core_attention=PackedDotProductAttention)
    layer.submodules = dataclasses.replace(layer.submodules, input_layernorm=RMSNorm, pre_mlp_layernorm=RMSNorm)
    return TransformerBlockSubmodules(layer_specs=[layer] * get_num_layers_to_build(config), layer_norm=RMSNorm)


def build_model(model: ModelConfig, parallel: ParallelConfig, *, pre_process: bool, post_process: bool):
    """A ``GPTModel`` holding this rank's TP shard of this rank's PP stage (on the default device). Call it after
    ``srpo_mcore.distributed.init_model_parallel`` (which also adapts Megatron to a CPU-only machine)."""
    from megatron.core.models.gpt import GPTModel

    platform.require_megatron_adapted()

    config = transformer_config(model, parallel)
    gpt = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec(model, config),
        vocab_size=model.padded_vocab_size,
        max_sequence_length=model.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=True,
        share_embeddings_and_output_weights=model.tie_word_embeddings,
        position_embedding_type="rope",
        rotary_base=int(model.rotary_base),
    )
    if resolve_transformer_impl(model) == "local":
        from srpo_mcore.model.packed_rope import PackedRotaryEmbedding

        # the local spec's packed attention takes RoPE'd q/k from Megatron's unfused THD RoPE, which is one rotation
        # of the whole row when the frequencies come per token (TE's spec keeps Megatron's RotaryEmbedding)
        gpt.rotary_pos_emb = PackedRotaryEmbedding(gpt.rotary_pos_emb)
    return gpt.to(platform.default_device())
