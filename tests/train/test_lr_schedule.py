"""The learning-rate schedule (srpo_mcore/train/optim.py, LRScheduler): the rate of every optimizer update against
the closed-form formula and against Megatron-Core's own scheduler, and an exact continuation after a resume."""

import math

import pytest
import torch

from srpo_mcore.config import ConfigError, load_config
from srpo_mcore.config.train import OptimizerConfig
from srpo_mcore.train.optim import LRScheduler


def _optimizer():
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))], lr=123.0)


def _run(scheduler: LRScheduler, updates: int) -> list[float]:
    """The rate each update trains at, read from the optimizer's param groups as the trainer's update would."""
    rates = []
    for _ in range(updates):
        groups = scheduler.optimizer.param_groups
        assert len({g["lr"] for g in groups}) == 1  # every param group gets the same rate
        rates.append(groups[0]["lr"])
        scheduler.step()
    return rates


def _closed_form(schedule: str, n: int, lr: float, min_lr: float, warmup: int, total: int) -> float:
    if n < warmup:
        return lr * (n + 1) / warmup
    p = min(1.0, (n - warmup) / max(1, total - warmup))
    return {"constant": lr, "linear": min_lr + (lr - min_lr) * (1 - p),
            "cosine": min_lr + (lr - min_lr) * (1 + math.cos(math.pi * p)) / 2}[schedule]


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
@pytest.mark.parametrize("warmup", [0, 1, 4])
def test_rates_follow_the_closed_form(schedule, warmup):
    total = 12
    cfg = OptimizerConfig(lr=2e-3, min_lr=1e-4, lr_schedule=schedule, lr_warmup_steps=warmup)
    rates = _run(LRScheduler(_optimizer(), cfg, total_updates=total), total + 2)  # past the end: stays at the floor
    expected = [_closed_form(schedule, n, 2e-3, 1e-4, warmup, total) for n in range(total + 2)]
    assert rates == pytest.approx(expected, rel=1e-12, abs=0)
    if warmup:
        assert rates[0] == pytest.approx(2e-3 / warmup) and rates[warmup - 1] == pytest.approx(2e-3)
    if schedule == "constant":
        assert set(rates[warmup:]) == {2e-3}
    else:  # decays from the peak to min_lr exactly at the run's last update boundary
        assert rates[warmup] == pytest.approx(2e-3) and rates[total] == pytest.approx(1e-4)
        assert all(a >= b for a, b in zip(rates[warmup:], rates[warmup + 1:]))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decay_matches_megatron_scheduler(schedule):
    """Without warm-up our update n trains at the rate Megatron-Core's OptimizerParamScheduler gives at step n."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    total, cfg = 10, OptimizerConfig(lr=1e-3, min_lr=1e-5, lr_schedule=schedule, lr_warmup_steps=0)
    ours = _run(LRScheduler(_optimizer(), cfg, total_updates=total), total)
    reference_opt = _optimizer()
    megatron = OptimizerParamScheduler(reference_opt, init_lr=0.0, max_lr=1e-3, min_lr=1e-5, lr_warmup_steps=0,
                                       lr_decay_steps=total, lr_decay_style=schedule, start_wd=0.0, end_wd=0.0,
                                       wd_incr_steps=total, wd_incr_style="constant")
    reference = []
    for _ in range(total):
        reference.append(reference_opt.param_groups[0]["lr"])
        megatron.step(1)
    assert ours == pytest.approx(reference, rel=1e-12)


def test_resume_continues_the_sequence_exactly():
    cfg = OptimizerConfig(lr=1e-3, min_lr=0.0, lr_schedule="cosine", lr_warmup_steps=3)
    straight = _run(LRScheduler(_optimizer(), cfg, total_updates=20), 20)
    first = LRScheduler(_optimizer(), cfg, total_updates=20)
    before = _run(first, 7)
    state = first.state_dict()
    resumed = LRScheduler(_optimizer(), cfg, total_updates=20)  # a fresh process: starts at update 0 ...
    assert resumed.optimizer.param_groups[0]["lr"] == straight[0]
    resumed.load_state_dict(state)  # ... until the checkpoint's state is loaded
    assert before + _run(resumed, 13) == straight


def test_resume_with_another_schedule_fails_naming_the_keys():
    state = LRScheduler(_optimizer(), OptimizerConfig(lr_schedule="cosine"), total_updates=10).state_dict()
    other = LRScheduler(_optimizer(), OptimizerConfig(lr_schedule="cosine"), total_updates=20)
    with pytest.raises(ValueError, match="train.steps"):
        other.load_state_dict(state)
    # a constant rate does not depend on the run's length: a longer run may resume it
    constant = LRScheduler(_optimizer(), OptimizerConfig(), total_updates=10)
    constant.load_state_dict(LRScheduler(_optimizer(), OptimizerConfig(), total_updates=5).state_dict())


def test_warmup_longer_than_the_run_is_a_config_error():
    with pytest.raises(ConfigError, match="optimizer.lr_warmup_steps"):
        load_config(None, ["train.steps=5", "train.mini_batches_per_step=1", "optimizer.lr_warmup_steps=6"])
    load_config(None, ["train.steps=3", "train.prompts_per_step=8", "train.mini_batches_per_step=2",
                       "optimizer.lr_warmup_steps=6"])


def test_checkpoint_without_scheduler_state_is_a_clear_error():
    from types import SimpleNamespace

    from srpo_mcore.train.trainer import restore_trainer_state

    ctx = SimpleNamespace(samplers={}, stages=None, guard=None, policy=None)
    with pytest.raises(RuntimeError, match=r"lacks \['lr_scheduler'\]: it was written by an older srpo-mcore"):
        restore_trainer_state(ctx, {"step": 2, "samplers": {}, "stages": {}})
