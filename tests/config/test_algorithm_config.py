import dataclasses

import pytest

from srpo_mcore.config import _build
from srpo_mcore.config.algorithm import AlgorithmConfig, ReflectionConfig, SamplingConfig, StageConfig
from srpo_mcore.config.base import ConfigError

SECTIONS = {
    "algorithm": AlgorithmConfig,
    "sampling": SamplingConfig,
    "stage": StageConfig,
    "reflection": ReflectionConfig,
}


@pytest.mark.parametrize("prefix, cls", SECTIONS.items())
def test_every_field_has_help(prefix, cls):
    for field in dataclasses.fields(cls):
        assert field.metadata.get("help"), f"{prefix}.{field.name} has no help"


def test_defaults_validate():
    AlgorithmConfig().validate()
    SamplingConfig().validate()
    StageConfig(switch_step=100).validate()
    ReflectionConfig().validate()
    assert AlgorithmConfig().kl_coef == 0.0 and SamplingConfig().strategy == "history_resampling"


@pytest.mark.parametrize(
    "cls, changes, key",
    [
        (AlgorithmConfig, {"advantage_estimator": "ppo"}, "algorithm.advantage_estimator"),
        (AlgorithmConfig, {"loss_aggregation": "sum"}, "algorithm.loss_aggregation"),
        (AlgorithmConfig, {"clip_eps_low": 1.0}, "algorithm.clip_eps_low"),
        (AlgorithmConfig, {"clip_eps_high": 0.0}, "algorithm.clip_eps_high"),
        (AlgorithmConfig, {"dual_clip_c": 1.0}, "algorithm.dual_clip_c"),
        (AlgorithmConfig, {"kl_coef": -0.1}, "algorithm.kl_coef"),
        (AlgorithmConfig, {"tis_cap": 0.5}, "algorithm.tis_cap"),
        (SamplingConfig, {"strategy": "random"}, "sampling.strategy"),
        (SamplingConfig, {"when_all_solved": "loop"}, "sampling.when_all_solved"),
        (SamplingConfig, {"dynamic_oversample_factor": 0.5}, "sampling.dynamic_oversample_factor"),
        (SamplingConfig, {"dynamic_max_rounds": 0}, "sampling.dynamic_max_rounds"),
        (StageConfig, {"two_stage": True}, "stage.switch_step"),
        (StageConfig, {"switch_step": 0}, "stage.switch_step"),
        (StageConfig, {"switch_step": 5, "stage2_code_fraction": 1.0}, "stage.stage2_code_fraction"),
        (StageConfig, {"plateau_window": -1}, "stage.plateau_window"),
        (ReflectionConfig, {"hesitation_phrases": []}, "reflection.hesitation_phrases"),
    ],
)
def test_bad_values_name_the_key(cls, changes, key):
    prefix = key.split(".")[0]
    with pytest.raises(ConfigError) as error:
        cls(**changes).validate(prefix)
    assert error.value.key == key


def test_built_from_yaml_like_mapping():
    algorithm = _build(
        AlgorithmConfig, {"dual_clip_c": 3, "tis_cap": None, "clip_eps_high": 0.2}, "algorithm"
    )
    assert algorithm.dual_clip_c == 3.0 and algorithm.tis_cap is None
    stage = _build(StageConfig, {"switch_step": 40}, "stage")
    stage.validate()
    reflection = _build(ReflectionConfig, {"recheck_phrases": ["verify"]}, "reflection")
    assert reflection.recheck_phrases == ["verify"] and reflection.hesitation_phrases[0] == "wait"
    with pytest.raises(ConfigError, match="sampling.strategi"):
        _build(SamplingConfig, {"strategi": "vanilla"}, "sampling")
