"""Sequence parallelism splits the sequence over the TP ranks: micro-batch lengths are padded to a multiple of TP,
and the shipped SP configs build a Megatron config with the layer spec this machine has (the local spec here).
The multi-rank SP runs (HF parity, an SRPO train step) are in tests/distributed/test_qwen2_parity.py."""

import glob

import pytest
import torch

from srpo_mcore.config import load_config
from srpo_mcore.model.forward import sequence_multiple
from srpo_mcore.tasks.scoring import ScoredSample
from srpo_mcore.train.batch import build_micro_batches
from tests.torchrun import REPO_ROOT


def _sample(prompt: int, response: int) -> ScoredSample:
    return ScoredSample(group=0, prompt_id="p", domain="math", prompt_ids=list(range(1, prompt + 1)),
                        response_ids=list(range(50, 50 + response)), rollout_logprobs=[-0.5] * response,
                        finish_reason="stop", advantage=1.0)


@pytest.mark.parametrize("multiple,widths", [(1, [8, 5]), (2, [8, 6]), (4, [8, 8]), (8, [8, 8]), (3, [9, 6])])
def test_builder_pads_lengths_to_the_multiple_without_changing_the_loss_inputs(multiple, widths):
    samples = [_sample(3, 6), _sample(2, 4)]  # input lengths 8 and 5
    plain = build_micro_batches(samples, [[0], [1]], pad_id=0, uniform_shape=False)
    padded = build_micro_batches(samples, [[0], [1]], pad_id=0, uniform_shape=False, seq_multiple=multiple)
    assert [mb.shape[1] for mb in padded] == widths
    for a, b in zip(plain, padded):
        s = a.shape[1]
        for name, t in {"input_ids": b.input_ids, **b.extras}.items():
            if t.dim() == 2:  # the real positions are unchanged, the padding is pad id / zero weight
                ref = a.input_ids if name == "input_ids" else a.extras[name]
                assert torch.equal(t[:, :s], ref), name
                if name != "seq_ids":  # the tail padding is a segment of its own (id 1 in a one-sample row)
                    assert not t[:, s:].any(), name
        assert b.cu_seqlens.tolist() == ([0, s] if b.shape[1] == s else [0, s, b.shape[1]])
    assert sum(mb.extras["loss_mask"].sum() for mb in padded) == 10


def test_uniform_shape_is_padded_too():
    mbs = build_micro_batches([_sample(3, 6), _sample(2, 4)], [[0], [1]], pad_id=0, uniform_shape=True,
                              seq_multiple=4)
    assert {mb.shape for mb in mbs} == {(1, 8)}


@pytest.mark.parametrize("path", [p for p in sorted(glob.glob(str(REPO_ROOT / "configs/srpo/*.yaml")))
                                  if "/_" not in p], ids=lambda p: p.rsplit("/", 1)[-1])
def test_shipped_configs_build_a_megatron_config_and_pad_for_it(path):
    from srpo_mcore.model.qwen2 import transformer_config

    cfg = load_config(path)
    megatron = transformer_config(cfg.model, cfg.parallel)  # refused SP without TE before
    assert megatron.sequence_parallel == cfg.parallel.sequence_parallel
    tp = cfg.parallel.tensor_model_parallel_size
    assert sequence_multiple(cfg.parallel) == sequence_multiple(megatron) == (tp if cfg.parallel.sequence_parallel
                                                                              else 1)
    if "7b" in path or "32b" in path:
        assert cfg.parallel.sequence_parallel and tp > 1


def test_sequence_parallel_without_tp_is_refused():
    from srpo_mcore.config.base import ConfigError

    with pytest.raises(ConfigError, match="parallel.sequence_parallel"):
        load_config(REPO_ROOT / "configs/models/tiny.yaml", ["parallel.sequence_parallel=true"])
