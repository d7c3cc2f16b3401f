"""The stage-1 -> stage-2 plateau rule is not fooled by History Resampling.

A deterministic simulation: a policy whose solve rate on every problem rises by ``RATE`` per step until
``STOP``, then stays. Training draws come from the real History Resampling sampler (a prompt solved by all its
rollouts leaves at the epoch's end). The training reward falls at every epoch boundary although the policy keeps
improving - a window rule on it would switch there - while the held-out probe (the same law on a fixed problem
set, evaluated every ``EVAL_INTERVAL`` steps) rises until ``STOP`` and then plateaus. The schedule, fed what the
trainer feeds it, switches only after the real plateau.
"""

from srpo_mcore.algorithm.sampling import GroupOutcome, HistoryResamplingSampler
from srpo_mcore.algorithm.stages import TwoStageSchedule
from srpo_mcore.config.algorithm import StageConfig

RATE, STOP, EVAL_INTERVAL, PER_STEP = 0.004, 60, 4, 10
# 40 training problems: half nearly solved from the start (they leave after epoch 0), half hard
TRAIN_BASE = [0.99] * 20 + [0.1 + 0.02 * i for i in range(20)]
PROBE_BASE = [0.99] * 10 + [0.1 + 0.04 * i for i in range(10)]
CONFIG = StageConfig(two_stage=True, plateau_window=2, plateau_min_improvement=0.005, stage2_code_fraction=0.5)


def solve_rate(base: float, step: int) -> float:
    return min(1.0, base + RATE * min(step, STOP))


def run(steps: int):
    sampler = HistoryResamplingSampler(range(len(TRAIN_BASE)), seed=3)
    schedule = TwoStageSchedule(CONFIG)
    rewards, switch, epochs = [], None, []
    for step in range(1, steps + 1):
        batch = sampler.begin_batch(PER_STEP)
        accuracies = []
        while ids := batch.next_request():
            rates = [solve_rate(TRAIN_BASE[i], step) for i in ids]
            accuracies += rates
            # all 8 rollouts correct exactly when the solve rate is >= 0.98 (deterministic stand-in)
            batch.add([GroupOutcome(i, (r,) * 8, (r >= 0.98,) * 8) for i, r in zip(ids, rates)])
        rewards.append(sum(accuracies) / len(accuracies))
        epochs.append(sampler.epoch)
        probe = None
        if step % EVAL_INTERVAL == 0:
            probe = sum(solve_rate(b, step) for b in PROBE_BASE) / len(PROBE_BASE)
        switch = switch or schedule.observe(step, probe)
    return rewards, epochs, switch


def test_history_resampling_epoch_boundary_does_not_switch_a_real_plateau_does():
    rewards, epochs, switch = run(120)
    boundary = epochs.index(1)  # first step drawn from epoch 1: the solved half has left
    assert rewards[boundary] < rewards[boundary - 1] - 0.3  # the training reward collapses at the boundary ...
    window = boundary  # ... so a rule on training-reward windows (epoch 0 vs the steps after) reads a loss there
    before = sum(rewards[boundary - window:boundary]) / window
    after = sum(rewards[boundary:boundary + window]) / window
    assert after - before < CONFIG.plateau_min_improvement
    assert switch is not None and switch.reason == "plateau"
    assert switch.after_step > STOP  # the probe kept rising while the policy learnt
    # the first evaluation whose windows hold no gain: two flat windows after STOP
    assert switch.after_step <= STOP + 2 * CONFIG.plateau_window * EVAL_INTERVAL
    assert switch.last_window_mean - switch.previous_window_mean < CONFIG.plateau_min_improvement


def test_no_switch_while_the_probe_rises():
    _, _, switch = run(STOP)
    assert switch is None


def test_plateau_rule_needs_the_periodic_evaluation():
    import pytest

    from srpo_mcore.config import ConfigError, load_config

    plateau = ["stages.two_stage=true", "stages.plateau_window=3"]
    with pytest.raises(ConfigError, match="stages.plateau_window.*train.eval_interval"):
        load_config(None, plateau)
    load_config(None, [*plateau, "train.eval_interval=5", "data.eval_files=[heldout.jsonl]"])
