import json

import numpy as np
import pytest

from srpo_mcore.algorithm.sampling import (
    BatchAssemblyStats,
    DynamicSampler,
    GroupOutcome,
    HistoryResamplingSampler,
    VanillaSampler,
    build_prompt_sampler,
)
from srpo_mcore.config.algorithm import SamplingConfig


def outcome(prompt_id: int, epoch: int) -> GroupOutcome:
    """Deterministic synthetic scores: ids 0 mod 4 never solved, 3 mod 4 always, the rest at random."""
    correct = np.random.default_rng([prompt_id, epoch]).random(4) < (prompt_id % 4) / 3
    return GroupOutcome(prompt_id, tuple(correct.astype(float)), tuple(bool(c) for c in correct))


def run_steps(sampler, steps: int, batch: int) -> list[list[int]]:
    """Drive ``steps`` steps through BatchAssembly; returns every request's prompt ids in order."""
    requests = []
    for _ in range(steps):
        assembly = sampler.begin_batch(batch)
        while ids := assembly.next_request():
            epoch = sampler.epoch
            requests.append(ids)
            assembly.add([outcome(p, epoch) for p in reversed(ids)])
    return requests


SAMPLERS = {
    "vanilla": lambda seed: VanillaSampler(range(10), seed),
    "history_resampling": lambda seed: HistoryResamplingSampler(range(12), seed),
    "dynamic": lambda seed: DynamicSampler(range(10), seed, oversample_factor=1.5, max_rounds=3),
}


@pytest.mark.parametrize("strategy", list(SAMPLERS))
def test_exact_resume_at_every_step(strategy):
    steps, batch = 14, 4
    expected = run_steps(SAMPLERS[strategy](7), steps, batch)
    at_epoch_end = 0
    for k in range(steps + 1):
        first = SAMPLERS[strategy](7)
        head = run_steps(first, k, batch)
        at_epoch_end += first.position == len(first.epoch_order)
        state = json.loads(json.dumps(first.state_dict()))
        resumed = SAMPLERS[strategy](999)  # the shuffle seed comes from the checkpoint
        resumed.load_state_dict(state)
        assert head + run_steps(resumed, steps - k, batch) == expected, f"interrupted after step {k}"
    assert at_epoch_end >= 1  # at least one interruption fell exactly on an epoch boundary


def test_vanilla_epochs_are_fresh_shuffles_of_every_prompt():
    sampler = VanillaSampler(range(10), seed=0)
    draws = [sampler.next_prompts(4) for _ in range(6)]
    assert [len(d) for d in draws] == [4, 4, 2, 4, 4, 2]  # never across an epoch boundary
    epoch0, epoch1 = sum(draws[:3], []), sum(draws[3:], [])
    assert sorted(epoch0) == sorted(epoch1) == list(range(10))
    assert epoch0 != epoch1
    assert sampler.epoch == 1
    again = VanillaSampler(range(10), seed=0)
    assert again.next_prompts(10) == epoch0
    assert VanillaSampler(range(10), seed=1).next_prompts(10) != epoch0


def test_vanilla_keeps_every_group():
    sampler = VanillaSampler(range(10), seed=0)
    batch = sampler.begin_batch(4)
    ids = batch.next_request()
    assert batch.add([GroupOutcome(p, (1.0, 1.0), (True, True)) for p in ids]) == [True] * 4
    assert batch.done and batch.next_request() == []
    assert batch.stats == BatchAssemblyStats(
        rounds=1,
        prompts_drawn=4,
        groups_kept=4,
        groups_dropped_equal_rewards=0,
        groups_dropped_surplus=0,
        short=False,
    )


def equal_if(predicate):
    return lambda p: GroupOutcome(p, (1.0, 1.0) if predicate(p) else (1.0, 0.0), (True, True))


def assemble(sampler, num_groups, score):
    batch = sampler.begin_batch(num_groups)
    requests = []
    while ids := batch.next_request():
        requests.append(ids)
        batch.add([score(p) for p in ids])
    return batch, requests


def test_dynamic_sampling_refills_until_full():
    sampler = DynamicSampler(range(10), seed=0, oversample_factor=1.5, max_rounds=3)
    order = sampler.epoch_order
    batch, requests = assemble(sampler, 3, equal_if(lambda p: p % 2 == 0))
    assert requests[0] == order[:5]  # ceil(3 x 1.5)
    odd = [p for p in order if p % 2]
    assert [g.prompt_id for g in batch.kept] == odd[:3]
    missing_after_round1 = 3 - len([p for p in order[:5] if p % 2][:3])
    if missing_after_round1:
        assert len(requests[1]) == min(-(-missing_after_round1 * 3 // 2), 5)
    assert batch.stats.groups_kept == 3 and not batch.stats.short


def test_dynamic_sampling_gives_up_after_max_rounds():
    sampler = DynamicSampler(range(10), seed=0, oversample_factor=1.5, max_rounds=3)
    batch, requests = assemble(sampler, 3, equal_if(lambda p: True))
    # 5 prompts, the other 5 of epoch 0 (a draw stops at the epoch's end), then 5 of epoch 1
    assert [len(r) for r in requests] == [5, 5, 5]
    assert sorted(requests[0] + requests[1]) == list(range(10))
    assert batch.kept == [] and sampler.epoch == 1
    assert batch.stats == BatchAssemblyStats(
        rounds=3,
        prompts_drawn=15,
        groups_kept=0,
        groups_dropped_equal_rewards=15,
        groups_dropped_surplus=0,
        short=True,
    )


def test_dynamic_sampling_drops_surplus():
    sampler = DynamicSampler(range(10), seed=0, oversample_factor=1.5, max_rounds=3)
    batch, requests = assemble(sampler, 3, equal_if(lambda p: False))
    assert len(requests) == 1 and [g.prompt_id for g in batch.kept] == requests[0][:3]
    assert batch.stats.groups_dropped_surplus == 2


@pytest.mark.parametrize("when_all_solved", ["reset", "stop"])
def test_history_resampling_when_everything_is_solved(when_all_solved):
    sampler = HistoryResamplingSampler([4, 9], seed=0, when_all_solved=when_all_solved)
    assemble(sampler, 2, lambda p: GroupOutcome(p, (1.0,), (True,)))
    batch, requests = assemble(sampler, 2, lambda p: GroupOutcome(p, (1.0,), (True,)))
    assert sampler.last_resample.dropped_all_correct == 2
    if when_all_solved == "reset":
        assert sorted(requests[0]) == [4, 9] and sampler.last_resample.reset_to_full_set
    else:
        assert requests == [] and batch.stats.short and sampler.exhausted
        resumed = HistoryResamplingSampler([4, 9], seed=0, when_all_solved="stop")
        resumed.load_state_dict(json.loads(json.dumps(sampler.state_dict())))
        assert resumed.exhausted and resumed.next_prompts(2) == []


def test_history_resampling_rejects_outcomes_of_undrawn_prompts():
    sampler = HistoryResamplingSampler(range(6), seed=0)
    drawn = sampler.next_prompts(3)
    undrawn = sorted(set(range(6)) - set(drawn))[0]
    with pytest.raises(ValueError, match="was not drawn"):
        sampler.record_outcomes([GroupOutcome(undrawn, (1.0,), (True,))])
    sampler.record_outcomes([GroupOutcome(drawn[0], (1.0,), (True,))])


def test_assembly_misuse():
    sampler = VanillaSampler(range(6), seed=0)
    batch = sampler.begin_batch(2)
    with pytest.raises(RuntimeError, match="without an open request"):
        batch.add([])
    ids = batch.next_request()
    with pytest.raises(RuntimeError, match="before asking"):
        batch.next_request()
    with pytest.raises(ValueError, match="request was"):
        batch.add([GroupOutcome(ids[0], (1.0,), (True,))])
    with pytest.raises(ValueError):
        sampler.begin_batch(0)


def test_bad_construction_and_checkpoints():
    with pytest.raises(ValueError, match="at least one"):
        VanillaSampler([], 0)
    with pytest.raises(ValueError, match="unique"):
        VanillaSampler([1, 1], 0)
    with pytest.raises(ValueError, match="seed"):
        VanillaSampler([1], -1)
    with pytest.raises(ValueError, match="asked for 0"):
        VanillaSampler([1], 0).next_prompts(0)
    with pytest.raises(ValueError, match="same strategy"):
        VanillaSampler(range(4), 0).load_state_dict(DynamicSampler(range(4), 0).state_dict())
    with pytest.raises(ValueError, match="same data set"):
        VanillaSampler(range(4), 0).load_state_dict(VanillaSampler(range(5), 0).state_dict())
    state = VanillaSampler(range(4), 0).state_dict() | {"position": 5}
    with pytest.raises(ValueError, match="outside epoch"):
        VanillaSampler(range(4), 0).load_state_dict(state)


def test_build_from_config():
    assert type(build_prompt_sampler(SamplingConfig(), range(3), 0)) is HistoryResamplingSampler
    assert type(build_prompt_sampler(SamplingConfig(strategy="vanilla"), range(3), 0)) is VanillaSampler
    dynamic = build_prompt_sampler(SamplingConfig(strategy="dynamic", dynamic_max_rounds=2), range(3), 0)
    assert type(dynamic) is DynamicSampler and dynamic.max_rounds == 2
    stop = build_prompt_sampler(SamplingConfig(when_all_solved="stop"), range(3), 0)
    assert stop.history.when_all_solved == "stop"
