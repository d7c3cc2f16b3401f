"""Typed configuration: YAML files + ``key.sub=value`` overrides, validated in one place.

    cfg = load_config("configs/quickstart.yaml", ["train.steps=3", "parallel.tensor_model_parallel_size=2"])
    validate_world_size(cfg, world_size=4)

A YAML file may start with ``base: <path>`` (or a list of paths), resolved relative to the file; later files
and then overrides win key by key. Unknown keys, wrong types and inconsistent values raise
:class:`ConfigError` naming the dotted key (with a suggestion for a misspelt key).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from srpo_mcore.config.algorithm import AlgorithmConfig, ReflectionConfig, SamplingConfig, StageConfig
from srpo_mcore.config.base import ConfigError, check, option
from srpo_mcore.config.data import DataConfig
from srpo_mcore.config.debug import DebugConfig
from srpo_mcore.config.model import ModelConfig, ParallelConfig
from srpo_mcore.config.rewards import RewardConfig
from srpo_mcore.config.rollout import RolloutConfig
from srpo_mcore.config.train import LoggingConfig, OptimizerConfig, TrainConfig

__all__ = ["RUN_CONFIG_IN_HF_EXPORT", "ConfigError", "SRPOConfig", "load_config", "parse_overrides", "to_dict",
           "to_yaml", "validate_model_parallel", "validate_world_size"]

# The trainer's HF export (run_dir/hf_final) carries the run's resolved config under this name; evaluating the
# export with ``--hf`` then uses the run's templates, lengths and reward options unless ``--config`` is given.
RUN_CONFIG_IN_HF_EXPORT = "srpo_run_config.yaml"


@dataclass
class SRPOConfig:
    """The whole run. Each section documents its own fields."""

    model: ModelConfig = option(factory=ModelConfig, help="Policy architecture.")
    parallel: ParallelConfig = option(factory=ParallelConfig, help="Trainer TP/PP/DP layout.")
    optimizer: OptimizerConfig = option(factory=OptimizerConfig, help="AdamW and the LR schedule.")
    train: TrainConfig = option(factory=TrainConfig, help="The RL loop, checkpoints.")
    rollout: RolloutConfig = option(factory=RolloutConfig, help="vLLM rollouts and weight sync.")
    rewards: RewardConfig = option(factory=RewardConfig, help="Rule rewards: accuracy, format, language mixing.")
    algorithm: AlgorithmConfig = option(factory=AlgorithmConfig, help="Advantages and the policy loss.")
    sampling: SamplingConfig = option(factory=SamplingConfig, help="Prompt sampling (History Resampling).")
    stages: StageConfig = option(factory=StageConfig, help="Stage 1 math, stage 2 math + code.")
    reflection: ReflectionConfig = option(factory=ReflectionConfig, help="Reflection-pattern statistics.")
    data: DataConfig = option(factory=DataConfig, help="Training and evaluation data.")
    logging: LoggingConfig = option(factory=LoggingConfig, help="Metrics sinks.")
    debug: DebugConfig = option(factory=DebugConfig, help="Crash-test hooks and console switches.")

    def validate(self) -> None:
        """Check every section, then the rules that span sections."""
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate(f.name)
        validate_model_parallel(self.model, self.parallel.tensor_model_parallel_size,
                                 self.parallel.pipeline_model_parallel_size, "parallel")
        validate_model_parallel(self.model, self.rollout.tensor_parallel_size, 1, "rollout")
        total = self.rollout.max_prompt_length + self.rollout.max_response_length
        check(total <= self.model.max_position_embeddings, "rollout.max_response_length",
              f"prompt ({self.rollout.max_prompt_length}) + response ({self.rollout.max_response_length}) exceeds "
              f"model.max_position_embeddings={self.model.max_position_embeddings}")
        if self.stages.two_stage and self.stages.plateau_window > 0:
            check(self.train.eval_interval > 0 and bool(self.data.eval_files), "stages.plateau_window",
                  "the plateau rule reads the held-out math pass@1 of the periodic evaluation: set "
                  "train.eval_interval > 0 and data.eval_files (with math problems), or use stages.switch_step")
        updates = self.train.steps * self.train.mini_batches_per_step
        check(self.optimizer.lr_warmup_steps <= updates, "optimizer.lr_warmup_steps",
              f"{self.optimizer.lr_warmup_steps} warm-up updates exceed the run's {updates} optimizer updates "
              "(train.steps x train.mini_batches_per_step)")
        check(total <= self.train.max_tokens_per_micro_batch, "train.max_tokens_per_micro_batch",
              f"{self.train.max_tokens_per_micro_batch} cannot hold one full sequence of {total} tokens")


def validate_model_parallel(model: ModelConfig, tp: int, pp: int, section: str) -> None:
    tp_key = f"{section}.tensor_model_parallel_size" if section == "parallel" else f"{section}.tensor_parallel_size"
    check(model.num_attention_heads % tp == 0, tp_key,
          f"TP={tp} does not divide model.num_attention_heads={model.num_attention_heads}")
    check(model.num_query_groups % tp == 0, tp_key,
          f"TP={tp} does not divide model.num_query_groups={model.num_query_groups} (each rank needs whole KV groups)")
    check(model.ffn_hidden_size % tp == 0, tp_key,
          f"TP={tp} does not divide model.ffn_hidden_size={model.ffn_hidden_size}")
    check(model.padded_vocab_size % tp == 0, tp_key,
          f"TP={tp} does not divide the padded vocab {model.padded_vocab_size} (raise "
          f"model.make_vocab_size_divisible_by to a multiple of {tp})")
    if section == "parallel":
        check(model.num_layers % pp == 0, "parallel.pipeline_model_parallel_size",
              f"PP={pp} does not divide model.num_layers={model.num_layers}")


def validate_world_size(cfg: SRPOConfig, world_size: int) -> int:
    """Check the layout fits ``world_size`` ranks; return the data-parallel size."""
    tp = cfg.parallel.tensor_model_parallel_size
    pp = cfg.parallel.pipeline_model_parallel_size
    check(world_size % (tp * pp) == 0, "parallel",
          f"world size {world_size} is not divisible by TP x PP = {tp} x {pp} = {tp * pp}")
    check(world_size % cfg.rollout.tensor_parallel_size == 0, "rollout.tensor_parallel_size",
          f"world size {world_size} is not divisible by rollout TP={cfg.rollout.tensor_parallel_size}")
    dp = world_size // (tp * pp)
    check(cfg.train.prompts_per_step % dp == 0 or cfg.train.prompts_per_step * cfg.train.samples_per_prompt % dp == 0,
          "train.prompts_per_step", f"the rollout batch cannot be split over {dp} data-parallel ranks")
    return dp


# ----------------------------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, *,
                validate: bool = True) -> SRPOConfig:
    """Read YAML (with ``base:`` inheritance), apply overrides, build typed sections and validate (callers that
    still replace a section, e.g. the model from a checkpoint, pass ``validate=False`` and validate after)."""
    raw: dict = _read_yaml_with_bases(Path(path), seen=()) if path else {}
    for key, value in parse_overrides(overrides or []):
        _set_dotted(raw, key, value)
    cfg = _build(SRPOConfig, raw, prefix="")
    if validate:
        cfg.validate()
    return cfg


def _read_yaml_with_bases(path: Path, seen: tuple) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError("base", f"circular 'base:' chain through {path}")
    if not path.is_file():
        raise ConfigError("base" if seen else "--config", f"no such config file: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError("--config", f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{path} must hold a mapping at the top level")
    bases = data.pop("base", [])
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else bases:
        _deep_merge(merged, _read_yaml_with_bases(path.parent / base, seen + (path,)))
    _deep_merge(merged, data)
    return merged


def _deep_merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """``["train.steps=3", "model.name=qwen"]`` -> ``[("train.steps", 3), ("model.name", "qwen")]``."""
    parsed = []
    for item in items:
        if "=" not in item:
            raise ConfigError(item, "an override must look like key.sub=value")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError:
            value = text
        parsed.append((key.strip(), value))
    return parsed


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(key, f"'{part}' is a value, not a section")
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix or "<top level>"
    if not isinstance(raw, dict):
        raise ConfigError(where, f"expected a section (mapping), got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean '{_join(prefix, close[0])}'?" if close else f"; known keys: {', '.join(fields)}"
            raise ConfigError(_join(prefix, key), f"unknown key{hint}")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = _coerce(hints[name], value, _join(prefix, name))
    return cls(**kwargs)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(key, f"{value!r} does not match {tp}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(key, f"{value!r} is not one of {typing.get_args(tp)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, got {type(value).__name__} {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-6" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {type(value).__name__} {value!r}")
        return value
    return value


# ----------------------------------------------------------------------------------------------- printing


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(_plain(to_dict(cfg)), sort_keys=False, default_flow_style=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
