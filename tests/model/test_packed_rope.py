"""Per-token RoPE frequencies for packed rows (the local spec's PackedRotaryEmbedding) against Hugging Face's Qwen2
rotary embedding applied sample by sample, and against Megatron's own per-sample THD path."""

import pytest
import torch
from megatron.core.models.common.embeddings.rope_utils import _apply_rotary_pos_emb_thd
from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
from megatron.core.packed_seq_params import PackedSeqParams
from transformers import Qwen2Config
from transformers.models.qwen2 import modeling_qwen2

from srpo_mcore.model.forward import MicroBatch
from srpo_mcore.model.packed_rope import PackedRotaryEmbedding, packed_positions

DIM, BASE = 16, 1e6
LENGTHS = [5, 1, 7, 3, 1, 12, 2, 9]


class OneRank:
    """The context-parallel group Megatron's THD RoPE asks for: size 1."""

    def size(self):
        return 1

    def rank(self):
        return 0


def boundaries_of(lengths):
    out = [0]
    for n in lengths:
        out.append(out[-1] + n)
    return out


@pytest.fixture
def rotary(monkeypatch):
    """Megatron's RotaryEmbedding as GPTModel builds it for Qwen2 (on CPU: its frequencies go to
    ``torch.cuda.current_device()``, which init_model_parallel's CPU adaptation makes the CPU)."""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: torch.device("cpu"))
    return PackedRotaryEmbedding(RotaryEmbedding(kv_channels=DIM, rotary_percent=1.0, rotary_base=BASE,
                                                 use_cpu_initialization=True, cp_group=OneRank()))


def thd_params(boundaries):
    cu = torch.tensor(boundaries, dtype=torch.int32)
    longest = max(e - s for s, e in zip(boundaries, boundaries[1:]))
    return PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=longest,
                           max_seqlen_kv=longest)


def packed_freqs(rotary, boundaries):
    """What GPTModel._preprocess does: ask for the rotary length with the packed params, then the frequencies."""
    params = thd_params(boundaries)
    length = rotary.get_rotary_seq_len(None, None, None, None, params)
    return rotary(length, packed_seq=True, cp_group=OneRank())


def hf_rope_per_sample(x, boundaries):
    """Hugging Face's Qwen2 RoPE of ``x`` ``[t, h, d]``, each sample at positions 0, 1, ..."""
    config = Qwen2Config(hidden_size=DIM * 4, num_attention_heads=4, num_key_value_heads=4,
                         rope_parameters={"rope_type": "default", "rope_theta": BASE})
    hf = modeling_qwen2.Qwen2RotaryEmbedding(config)
    pieces = []
    for s, e in zip(boundaries, boundaries[1:]):
        cos, sin = hf(x, torch.arange(e - s)[None])
        sample = x[s:e].transpose(0, 1)[None]  # [1, h, n, d]
        rotated, _ = modeling_qwen2.apply_rotary_pos_emb(sample, sample, cos, sin)
        pieces.append(rotated[0].transpose(0, 1))
    return torch.cat(pieces)


def test_positions_restart_at_every_boundary_as_the_micro_batch_says():
    boundaries = boundaries_of(LENGTHS)
    mb = MicroBatch(torch.zeros(1, boundaries[-1], dtype=torch.long), {},
                    torch.tensor(boundaries, dtype=torch.int32))
    got = packed_positions(tuple(boundaries), torch.device("cpu"))
    assert torch.equal(got, mb.position_ids()[0])
    assert got.tolist() == [p for n in LENGTHS for p in range(n)]


def test_packed_frequencies_are_the_per_position_rows_of_each_token(rotary):
    boundaries = boundaries_of(LENGTHS)
    freqs = packed_freqs(rotary, boundaries)
    table = rotary.rotary(max(LENGTHS))
    assert freqs.shape == (boundaries[-1], 1, 1, DIM)
    assert torch.equal(freqs, table[[p for n in LENGTHS for p in range(n)]])
    assert torch.equal(rotary(7), rotary.rotary(7))  # padded (non-THD) rows: Megatron's table, unchanged


def test_per_token_rope_matches_hf_per_sample_and_megatrons_per_sample_path(rotary):
    boundaries = boundaries_of(LENGTHS)
    cu = torch.tensor(boundaries, dtype=torch.int32)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(boundaries[-1], 3, DIM, generator=g, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(boundaries[-1], 3, DIM, generator=g, dtype=torch.float64)

    per_token = _apply_rotary_pos_emb_thd(x, cu, packed_freqs(rotary, boundaries), cp_group=OneRank())
    per_sample = _apply_rotary_pos_emb_thd(x, cu, rotary.rotary(max(LENGTHS)), cp_group=OneRank())
    hf = hf_rope_per_sample(x, boundaries)
    got = torch.autograd.grad(per_token, x, grad_out, retain_graph=True)[0]
    for reference in (hf, per_sample):
        torch.testing.assert_close(per_token, reference, rtol=0, atol=1e-12)
        want = torch.autograd.grad(reference, x, grad_out, retain_graph=True)[0]
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)

    # negative control: row positions that do not restart at the boundaries are far outside the bound
    row_freqs = rotary.rotary(boundaries[-1])
    across = _apply_rotary_pos_emb_thd(x, cu, row_freqs, cp_group=OneRank())  # exact-mapping branch, row positions
    assert (across - hf).abs().max() > 1e-1


def test_frequencies_are_refused_without_the_micro_batch_boundaries(rotary):
    with pytest.raises(RuntimeError, match="before get_rotary_seq_len"):
        rotary(12, packed_seq=True)
    packed_freqs(rotary, boundaries_of(LENGTHS))
    with pytest.raises(RuntimeError, match="before get_rotary_seq_len"):  # used once, not carried to the next
        rotary(12, packed_seq=True)
