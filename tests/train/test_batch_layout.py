"""Micro-batch layout of scored samples (train/batch.py) against a hand-written expectation; rollout fields as
tensor views (what the engine returns) and as plain lists give the same tensors."""

import torch

from srpo_mcore.tasks.scoring import ScoredSample
from srpo_mcore.train.batch import build_micro_batches, padding_fraction


def sample(prompt, response, logprobs, advantage, *, as_tensors):
    if as_tensors:  # like the engine: int32 / float32 views into one packed buffer
        ids = torch.tensor([9, *response, 9], dtype=torch.int32)[1:-1]
        lps = torch.tensor([0.0, *logprobs], dtype=torch.float32)[1:]
    else:
        ids, lps = list(response), list(logprobs)
    s = ScoredSample(group=0, prompt_id="p", domain="math", prompt_ids=tuple(prompt), response_ids=ids,
                     rollout_logprobs=lps, finish_reason="stop")
    s.advantage = advantage
    return s


def layout(as_tensors, **kwargs):
    samples = [sample([1, 2, 3], [4, 5], [-0.5, -0.25], 1.5, as_tensors=as_tensors),
               sample([6], [7, 8, 9], [-1.0, -2.0, -3.0], -0.5, as_tensors=as_tensors)]
    return build_micro_batches(samples, [[0, 1], []], pad_id=0, **{"uniform_shape": False, **kwargs})


def test_packed_layout_by_hand():
    full, dummy = layout(as_tensors=True)
    # sample 0: 1 2 3 | 4 5 (4 inputs), sample 1: 6 | 7 8 9 (3 inputs), end to end in one row, no padding
    assert full.input_ids.tolist() == [[1, 2, 3, 4, 6, 7, 8]]
    assert full.extras["targets"].tolist() == [[2, 3, 4, 5, 7, 8, 9]]
    assert full.cu_seqlens.tolist() == [0, 4, 7] and full.cu_seqlens.dtype == torch.int32
    assert full.position_ids().tolist() == [[0, 1, 2, 3, 0, 1, 2]]  # rotary positions restart per sample
    assert full.extras["seq_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1]]
    assert full.extras["loss_mask"].tolist() == [[0, 0, 1, 1, 1, 1, 1]]
    assert full.extras["advantages"].tolist() == [[0, 0, 1.5, 1.5, -0.5, -0.5, -0.5]]
    assert full.extras["rollout_logprobs"].tolist() == [[0, 0, -0.5, -0.25, -1.0, -2.0, -3.0]]
    assert full.extras["sample_index"].tolist() == [0, 1] and int(full.extras["num_sequences"]) == 2
    assert dummy.extras["sample_index"].tolist() == [] and dummy.extras["loss_mask"].sum() == 0
    assert dummy.cu_seqlens.tolist() == [0, 1] and int(dummy.extras["num_sequences"]) == 0
    assert padding_fraction([full, dummy]) == (1, 8)


def test_tail_padding_is_a_segment_of_its_own():
    # sequence parallelism at TP4 rounds 7 up to 8; pipeline parallelism pads every row to the longest (8)
    full, dummy = layout(as_tensors=True, seq_multiple=4, uniform_shape=True)
    assert full.shape == dummy.shape == (1, 8)
    assert full.cu_seqlens.tolist() == [0, 4, 7, 8] and dummy.cu_seqlens.tolist() == [0, 8]
    assert full.position_ids().tolist() == [[0, 1, 2, 3, 0, 1, 2, 0]]
    assert full.extras["seq_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1, 2]]
    assert full.extras["loss_mask"][0, 7] == 0 and full.input_ids[0, 7] == 0
    assert padding_fraction([full, dummy]) == (9, 16)
    packed = full.packed_seq_params()
    assert packed.qkv_format == "thd" and packed.max_seqlen_q == 4 and torch.equal(packed.cu_seqlens_kv, full.cu_seqlens)


def test_tensor_views_and_lists_lay_out_identically():
    for a, b in zip(layout(as_tensors=True), layout(as_tensors=False)):
        assert torch.equal(a.input_ids, b.input_ids) and a.input_ids.dtype == torch.long
        assert a.extras.keys() == b.extras.keys()
        assert all(torch.equal(a.extras[k], b.extras[k]) for k in a.extras)
        assert torch.equal(a.cu_seqlens, b.cu_seqlens)
