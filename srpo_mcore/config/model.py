"""Model architecture and parallel layout sections."""

from __future__ import annotations

from dataclasses import dataclass

from srpo_mcore.config.base import check, check_choice, check_positive, option

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}  # parameter / engine dtypes: bytes per element
DTYPES = tuple(DTYPE_BYTES)


@dataclass
class ModelConfig:
    """A Qwen2-architecture decoder (GQA, RMSNorm, SwiGLU, QKV bias, RoPE)."""

    name: str = option("tiny", "Human-readable model name (e.g. qwen2.5-32b).")
    num_layers: int = option(2, "Number of transformer layers.")
    hidden_size: int = option(64, "Model width.")
    ffn_hidden_size: int = option(128, "SwiGLU intermediate size (HF intermediate_size).")
    num_attention_heads: int = option(4, "Query heads.")
    num_query_groups: int = option(2, "Key/value heads (GQA groups; HF num_key_value_heads).")
    vocab_size: int = option(256, "Tokenizer vocabulary rows of the HF checkpoint (HF vocab_size).")
    make_vocab_size_divisible_by: int = option(
        128, "Embedding rows are padded to a multiple of this; TP must divide the result. Padded rows never get "
        "probability mass."
    )
    max_position_embeddings: int = option(4096, "Longest sequence the RoPE tables cover.")
    rotary_base: float = option(1_000_000.0, "RoPE theta (1e6 for Qwen2.5).")
    norm_epsilon: float = option(1e-6, "RMSNorm epsilon (HF rms_norm_eps).")
    tie_word_embeddings: bool = option(False, "Share the input embedding with the output layer.")
    add_qkv_bias: bool = option(True, "Bias on the fused QKV projection (Qwen2: yes).")
    init_method_std: float = option(0.02, "Std of the normal init for freshly initialised weights.")
    params_dtype: str = option("float32", "Parameter dtype: float32, bfloat16 or float16.")
    transformer_impl: str = option(
        "auto", "Layer spec: 'transformer_engine' (GPU, fused attention), 'local', or 'auto' (TE when importable)."
    )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def padded_vocab_size(self) -> int:
        """Embedding/output rows: ``vocab_size`` rounded up to ``make_vocab_size_divisible_by``.

        Unlike Megatron-LM's default this does not depend on TP, so a checkpoint keeps its shape when it is
        loaded at another TP (the config check makes TP divide it instead)."""
        multiple = self.make_vocab_size_divisible_by
        return -(-self.vocab_size // multiple) * multiple

    def validate(self, prefix: str = "model") -> None:
        for key in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups",
                    "vocab_size", "make_vocab_size_divisible_by", "max_position_embeddings"):
            check_positive(getattr(self, key), f"{prefix}.{key}")
        check(self.hidden_size % self.num_attention_heads == 0, f"{prefix}.hidden_size",
              f"{self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}")
        check(self.num_attention_heads % self.num_query_groups == 0, f"{prefix}.num_query_groups",
              f"num_attention_heads={self.num_attention_heads} is not a multiple of num_query_groups="
              f"{self.num_query_groups}")
        check_positive(self.norm_epsilon, f"{prefix}.norm_epsilon")
        check_positive(self.rotary_base, f"{prefix}.rotary_base")
        check_choice(self.params_dtype, DTYPES, f"{prefix}.params_dtype")
        check_choice(self.transformer_impl, ("auto", "local", "transformer_engine"), f"{prefix}.transformer_impl")


@dataclass
class ParallelConfig:
    """How the trainer's model is split over ranks. DP is derived: world_size / (TP x PP)."""

    tensor_model_parallel_size: int = option(1, "Tensor parallel size (TP) of the trainer.")
    pipeline_model_parallel_size: int = option(1, "Pipeline parallel size (PP) of the trainer.")
    sequence_parallel: bool = option(
        False, "Megatron sequence parallelism (needs TP > 1; micro-batch lengths are padded to a multiple of TP).")
    use_distributed_optimizer: bool = option(False, "Shard optimizer state over data-parallel ranks (ZeRO-1).")
    recompute_granularity: str = option("none", "Activation recomputation: none, selective or full.")
    recompute_num_layers: int = option(1, "With full recomputation: layers per recomputed chunk.")
    backend: str = option("auto", "torch.distributed backend: auto (nccl with CUDA, else gloo), nccl (one default "
                                  "group: NCCL for CUDA tensors, gloo for CPU tensors) or gloo.")

    def validate(self, prefix: str = "parallel") -> None:
        check_positive(self.tensor_model_parallel_size, f"{prefix}.tensor_model_parallel_size")
        check_positive(self.pipeline_model_parallel_size, f"{prefix}.pipeline_model_parallel_size")
        check_choice(self.recompute_granularity, ("none", "selective", "full"), f"{prefix}.recompute_granularity")
        check_positive(self.recompute_num_layers, f"{prefix}.recompute_num_layers")
        check_choice(self.backend, ("auto", "nccl", "gloo"), f"{prefix}.backend")
        check(not self.sequence_parallel or self.tensor_model_parallel_size > 1, f"{prefix}.sequence_parallel",
              "sequence parallelism needs tensor_model_parallel_size > 1")
