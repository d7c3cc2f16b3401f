import json

import numpy as np
import pytest
import torch

from srpo_mcore.algorithm.advantages import grpo_advantages
from srpo_mcore.algorithm.history_resampling import EpochResampleStats, HistoryResampler
from srpo_mcore.algorithm.sampling import GroupOutcome, HistoryResamplingSampler, VanillaSampler


def record_controlled_epoch(history: HistoryResampler) -> None:
    history.record(0, [1, 1, 1])  # all correct
    history.record(1, [1, 0, 1])  # mixed
    history.record(2, [0, 0, 0])  # all wrong
    history.record(3, [True, True])  # all correct over two calls
    history.record(3, [True])
    history.record(4, [1])  # mixed over two calls
    history.record(4, [0])
    # 5 never scored (unseen)


def test_controlled_epoch():
    history = HistoryResampler(range(6))
    record_controlled_epoch(history)
    stats = history.finish_epoch(epoch=0)
    assert history.active_prompt_ids == [1, 2, 4, 5]
    assert stats == EpochResampleStats(
        epoch=0,
        num_prompts=6,
        kept=4,
        dropped_all_correct=2,
        all_wrong=1,
        mixed=2,
        unseen=1,
        reset_to_full_set=False,
    )
    assert stats.as_metrics()["history_resampling/dropped_all_correct"] == 2.0
    # dropping is cumulative: prompt 0 cannot be recorded any more, 1 can and is now judged afresh
    with pytest.raises(ValueError, match="not in this epoch"):
        history.record(0, [0])
    history.record(1, [1, 1])
    stats = history.finish_epoch(epoch=1)
    assert history.active_prompt_ids == [2, 4, 5]
    assert (stats.num_prompts, stats.dropped_all_correct, stats.unseen) == (4, 1, 3)


def test_state_survives_json_round_trip_mid_epoch():
    uninterrupted = HistoryResampler(range(6))
    record_controlled_epoch(uninterrupted)
    expected = uninterrupted.finish_epoch(0)

    first = HistoryResampler(range(6))
    first.record(0, [1, 1, 1])
    first.record(3, [True, True])
    first.record(4, [1])
    resumed = HistoryResampler(range(6))
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    resumed.record(1, [1, 0, 1])
    resumed.record(2, [0, 0, 0])
    resumed.record(3, [True])
    resumed.record(4, [0])
    assert resumed.finish_epoch(0) == expected
    assert resumed.active_prompt_ids == uninterrupted.active_prompt_ids


@pytest.mark.parametrize(
    "when_all_solved, expected_active, reset", [("reset", [0, 1], True), ("stop", [], False)]
)
def test_all_solved(when_all_solved, expected_active, reset):
    history = HistoryResampler([0, 1], when_all_solved)
    history.record(0, [1])
    history.record(1, [1, 1])
    stats = history.finish_epoch(0)
    assert history.active_prompt_ids == expected_active
    assert stats.kept == 0 and stats.reset_to_full_set is reset


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="unique"):
        HistoryResampler([0, 0])
    with pytest.raises(ValueError, match="when_all_solved"):
        HistoryResampler([0], "restart")
    history = HistoryResampler([0, 1])
    with pytest.raises(ValueError, match="not in this epoch"):
        history.record(7, [1])
    with pytest.raises(ValueError, match="no outcomes"):
        history.record(0, [])
    with pytest.raises(ValueError, match="0/1"):
        history.record(0, [0.5])
    with pytest.raises(ValueError, match="1 prompt in the checkpoint's History Resampling state not in the data set: first: 2"):
        history.load_state_dict(HistoryResampler(range(3)).state_dict())


def all_or_nothing(prompt_id: int) -> tuple[bool, ...]:
    """Controlled outcomes: ids 0 mod 3 all correct, 1 mod 3 mixed, 2 mod 3 all wrong."""
    return {0: (True, True), 1: (True, False), 2: (False, False)}[prompt_id % 3]


def test_sampler_drops_all_correct_prompts_next_epoch():
    sampler = HistoryResamplingSampler(range(12), seed=3)
    while sampler.epoch == 0 and sampler.position < 12:
        batch = sampler.begin_batch(5)
        ids = batch.next_request()
        batch.add([GroupOutcome(p, tuple(map(float, all_or_nothing(p))), all_or_nothing(p)) for p in ids])
    first = sampler.next_prompts(100)
    assert sampler.epoch == 1
    assert sorted(first) == [p for p in range(12) if p % 3 != 0]
    assert sampler.last_resample.dropped_all_correct == 4
    assert sampler.metrics()["sampling/history_resampling/mixed"] == 4.0


def simulate_zero_advantage_fraction(
    sampler, solve_prob: np.ndarray, epochs: int, batch: int, n: int
) -> float:
    """Fraction of zero-advantage groups over epochs 1.. (epoch 0 is the same for both strategies)."""
    zero = total = 0
    while sampler.epoch < epochs:
        assembly = sampler.begin_batch(batch)
        ids = assembly.next_request()
        if not ids:
            break
        epoch = sampler.epoch
        correct = [np.random.default_rng([p, epoch]).random(n) < solve_prob[p] for p in ids]
        assembly.add(
            [GroupOutcome(p, tuple(c.astype(float)), tuple(bool(x) for x in c)) for p, c in zip(ids, correct)]
        )
        if epoch >= 1:
            result = grpo_advantages(torch.tensor(np.array(correct), dtype=torch.float32))
            zero += int(result.zero_advantage.sum())
            total += result.num_groups
    return zero / total


def test_history_resampling_lowers_zero_advantage_fraction():
    rng = np.random.default_rng(0)
    # 40 always solved, 20 never solved, 60 in between
    solve_prob = np.concatenate([np.ones(40), np.zeros(20), rng.uniform(0.2, 0.8, 60)])
    vanilla = simulate_zero_advantage_fraction(VanillaSampler(range(120), seed=1), solve_prob, 4, 16, 8)
    history = simulate_zero_advantage_fraction(
        HistoryResamplingSampler(range(120), seed=1), solve_prob, 4, 16, 8
    )
    assert vanilla > 0.45  # about 60 of 120 prompts give equal rewards every epoch
    assert history < vanilla - 0.15
