"""``split_mini_batches``: exactly k mini-batches of whole groups, balanced, in group order."""

import pytest

from srpo_mcore.tasks.scoring import ScoredSample
from srpo_mcore.train.trainer import split_mini_batches


def _samples(groups: int, per_group: int = 2) -> list[ScoredSample]:
    return [ScoredSample(group=g, prompt_id=f"p{g}", domain="math", prompt_ids=[1], response_ids=[2],
                         rollout_logprobs=[0.0], finish_reason="stop") for g in range(groups) for _ in range(per_group)]


@pytest.mark.parametrize("groups,k", [(5, 4), (5, 1), (5, 5), (4, 2), (7, 3), (9, 4), (1, 1)])
def test_exactly_k_balanced_mini_batches_of_whole_groups(groups, k):
    samples = _samples(groups)
    batches = split_mini_batches(samples, k)
    assert len(batches) == k
    sizes = [len({s.group for s in b}) for b in batches]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    # every sample exactly once, groups whole and in order
    flat = [s for b in batches for s in b]
    assert flat == samples
    for b in batches:
        for g in {s.group for s in b}:
            assert sum(s.group == g for s in b) == 2


def test_five_groups_four_mini_batches_gives_2_1_1_1():
    assert [len(b) // 2 for b in split_mini_batches(_samples(5), 4)] == [2, 1, 1, 1]


@pytest.mark.parametrize("k", [0, 6])
def test_k_outside_1_to_groups_raises_naming_the_field(k):
    with pytest.raises(ValueError, match="train.mini_batches_per_step"):
        split_mini_batches(_samples(5), k)
