import json
import math

import pytest

from srpo_mcore.algorithm.stages import DomainCounts, StageSwitch, TwoStageSchedule
from srpo_mcore.config.algorithm import StageConfig
from srpo_mcore.config.base import ConfigError

PLATEAU = StageConfig(two_stage=True, plateau_window=2, plateau_min_improvement=0.05, stage2_code_fraction=0.25)
# window means: [.1 .2] -> [.3 .4] +0.2; [.2 .3] -> [.4 .42] +0.16; [.3 .4] -> [.42 .41] +0.065;
# [.4 .42] -> [.41 .40] -0.005: plateau after step 6
REWARDS = [0.1, 0.2, 0.3, 0.4, 0.42, 0.41, 0.40, 0.9]


def test_switch_at_configured_step():
    schedule = TwoStageSchedule(StageConfig(two_stage=True, switch_step=3, stage2_code_fraction=0.25))
    assert schedule.prompt_counts(8) == DomainCounts(math=8, code=0)
    assert schedule.observe(0, 0.5) is None
    assert schedule.observe(1, 0.5) is None
    switch = schedule.observe(2, 0.5)
    assert switch == StageSwitch(after_step=2, reason="switch_step")
    assert "starts at step 3" in switch.message()
    assert schedule.stage == 2 and schedule.prompt_counts(8) == DomainCounts(math=6, code=2)
    assert schedule.observe(3, 0.5) is None


def test_switch_on_plateau():
    schedule = TwoStageSchedule(PLATEAU)
    events = [schedule.observe(step, reward) for step, reward in enumerate(REWARDS)]
    assert events[:6] == [None] * 6 and events[7] is None
    assert events[6].after_step == 6 and events[6].reason == "plateau"
    assert events[6].previous_window_mean == pytest.approx(0.41)
    assert events[6].last_window_mean == pytest.approx(0.405)
    assert "plateaued" in events[6].message()
    assert schedule.switch == events[6]


def test_min_stage1_steps_delays_the_plateau_rule():
    schedule = TwoStageSchedule(StageConfig(two_stage=True, plateau_window=2, min_stage1_steps=6))
    events = [schedule.observe(step, 0.3) for step in range(7)]
    assert [e is not None for e in events] == [False] * 5 + [True, False]


def test_state_round_trip_mid_window():
    uninterrupted = TwoStageSchedule(PLATEAU)
    expected = [uninterrupted.observe(s, r) for s, r in enumerate(REWARDS)]
    first = TwoStageSchedule(PLATEAU)
    head = [first.observe(s, r) for s, r in enumerate(REWARDS[:5])]
    resumed = TwoStageSchedule(PLATEAU)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    tail = [resumed.observe(s, r) for s, r in enumerate(REWARDS[5:], start=5)]
    assert head + tail == expected
    after = TwoStageSchedule(PLATEAU)
    after.load_state_dict(json.loads(json.dumps(resumed.state_dict())))
    assert after.stage == 2 and after.switch == expected[6]


def test_single_stage_mixes_from_the_start():
    schedule = TwoStageSchedule(StageConfig(two_stage=False))
    assert schedule.stage == 2 and schedule.prompt_counts(10) == DomainCounts(math=5, code=5)
    assert schedule.observe(0, 0.1) is None


def test_ratio_rounding():
    schedule = TwoStageSchedule(StageConfig(two_stage=False, stage2_code_fraction=0.25))
    assert schedule.prompt_counts(10) == DomainCounts(math=7, code=3)  # 2.5 rounds half up
    assert schedule.prompt_counts(1) == DomainCounts(math=1, code=0)


def test_rejects_bad_input():
    with pytest.raises(ConfigError, match="stage.switch_step"):
        TwoStageSchedule(StageConfig(two_stage=True))  # no rule would ever switch
    schedule = TwoStageSchedule(StageConfig(two_stage=True, switch_step=5))
    with pytest.raises(ValueError, match="not finite"):
        schedule.observe(0, math.nan)
    with pytest.raises(ValueError):
        schedule.prompt_counts(0)
