import math
import random
import statistics

import pytest
import torch

from srpo_mcore.algorithm.advantages import grpo_advantages, truncated_mask
from srpo_mcore.config.algorithm import AlgorithmConfig

SQRT3 = math.sqrt(3.0)


def test_hand_computed_group():
    # mean 0.5, sample std sqrt(1/3): A = +-0.5 * sqrt(3)
    result = grpo_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), eps=0.0)
    expected = [0.5 * SQRT3, -0.5 * SQRT3, -0.5 * SQRT3, 0.5 * SQRT3]
    assert result.advantages[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert result.group_mean.tolist() == [0.5]
    assert result.group_std.tolist() == pytest.approx([1 / SQRT3])
    assert result.zero_advantage_fraction == 0.0


def test_equal_reward_groups_are_zero_and_counted():
    rewards = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    result = grpo_advantages(rewards, eps=0.0)
    # group 2: mean 0.25, sample std sqrt(0.75 / 3) = 0.5
    assert result.advantages.tolist() == [[0.0] * 4, [0.0] * 4, [1.5, -0.5, -0.5, -0.5]]
    assert result.zero_advantage.tolist() == [True, True, False]
    assert result.equal_rewards.tolist() == [True, True, False]
    assert result.zero_advantage_fraction == pytest.approx(2 / 3)
    assert result.flat().tolist() == [0.0] * 8 + [1.5, -0.5, -0.5, -0.5]


def test_equal_non_integer_rewards_give_exact_zero():
    result = grpo_advantages(torch.tensor([[0.1, 0.1, 0.1]], dtype=torch.float64))
    assert result.advantages.tolist() == [[0.0, 0.0, 0.0]]
    assert result.zero_advantage.tolist() == [True]


def test_without_std_normalisation():
    result = grpo_advantages(torch.tensor([[2.0, 0.0], [3.0, 1.0]]), normalize_by_std=False)
    assert result.advantages.tolist() == [[1.0, -1.0], [1.0, -1.0]]


def test_truncated_responses_get_zero_advantage_but_count_in_statistics():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    truncated = torch.tensor([[False, True, False, False]])
    result = grpo_advantages(rewards, truncated, eps=0.0)
    assert result.advantages[0].tolist() == pytest.approx(
        [0.5 * SQRT3, 0.0, -0.5 * SQRT3, 0.5 * SQRT3], abs=1e-6
    )
    assert result.group_mean.tolist() == [0.5]
    kept = grpo_advantages(rewards, truncated, eps=0.0, zero_truncated=False)
    assert kept.advantages[0, 1].item() == pytest.approx(-0.5 * SQRT3, abs=1e-6)


def test_group_with_every_unequal_response_truncated_is_zero_advantage():
    result = grpo_advantages(
        torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[True, True], [False, True]])
    )
    assert result.zero_advantage.tolist() == [True, False]
    assert result.equal_rewards.tolist() == [False, False]
    assert result.zero_advantage_fraction == 0.5


def test_matches_pure_python_reference():
    rng = random.Random(0)
    for _ in range(20):
        groups, size = rng.randint(1, 6), rng.randint(2, 9)
        rows = [[rng.choice([0.0, 0.5, 1.0, rng.random()]) for _ in range(size)] for _ in range(groups)]
        cut = [[rng.random() < 0.2 for _ in range(size)] for _ in range(groups)]
        result = grpo_advantages(torch.tensor(rows), torch.tensor(cut), eps=1e-6)
        for g, (row, row_cut) in enumerate(zip(rows, cut)):
            mean, std = statistics.fmean(row), statistics.stdev(row)
            equal = len(set(row)) == 1
            expected = [0.0 if equal or c else (r - mean) / (std + 1e-6) for r, c in zip(row, row_cut)]
            assert result.advantages[g].tolist() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_group_of_one_has_zero_advantage():
    result = grpo_advantages(torch.tensor([[0.7], [0.0]]))
    assert result.advantages.tolist() == [[0.0], [0.0]]
    assert result.zero_advantage_fraction == 1.0


@pytest.mark.parametrize(
    "rewards, truncated",
    [
        (torch.tensor([1.0, 0.0]), None),
        (torch.tensor([[1.0, 0.0]]), torch.tensor([[True]])),
        (torch.tensor([[1.0, float("nan")]]), None),
    ],
)
def test_rejects_bad_input(rewards, truncated):
    with pytest.raises(ValueError):
        grpo_advantages(rewards, truncated)


def test_truncated_mask_from_finish_reasons():
    mask = truncated_mask(["stop", "length", "stop", "stop"], group_size=2)
    assert mask.tolist() == [[False, True], [False, False]]
    with pytest.raises(ValueError):
        truncated_mask(["stop", "length", "stop"], group_size=2)


def test_config_switches():
    """The settings the trainer passes from the ``algorithm`` section (trainer.assign_advantages)."""
    rewards = torch.tensor([[2.0, 0.0]])
    truncated = torch.tensor([[True, False]])
    assert grpo_advantages(rewards, truncated, normalize_by_std=False, zero_truncated=False
                           ).advantages.tolist() == [[1.0, -1.0]]
    cfg = AlgorithmConfig()
    default = grpo_advantages(rewards, truncated, normalize_by_std=cfg.normalize_advantage_by_std,
                              eps=cfg.advantage_eps, zero_truncated=cfg.overlong_zero_advantage)
    assert default.advantages[0, 0].item() == 0.0
    assert default.advantages[0, 1].item() == pytest.approx(-1 / math.sqrt(2), rel=1e-5)


def test_every_configurable_estimator_has_a_function():
    from srpo_mcore.algorithm.advantages import ESTIMATORS
    from srpo_mcore.config.algorithm import ADVANTAGE_ESTIMATORS

    assert set(ESTIMATORS) == set(ADVANTAGE_ESTIMATORS)
