"""Rollout replay: record each step's scored rollouts, then run the trainer's steps from them without vLLM or
the rewards.

With ``train.save_rollouts: true`` rank 0 writes, after each step's rollout and reward stage,
``RUN_DIR/rollouts/step_NNNNNN.pt`` (``torch.save`` of packed tensors and plain lists: prompt and response token
ids, rollout log-probs, rewards, accuracy, finish reasons, groups, domains, response texts, the rewards' verdicts
(format_ok, language_penalty, status), the samplers' state and the sampling metrics) and keeps ``RUN_DIR/rollouts/index.json`` (format version, the model's architecture, a
tokenizer fingerprint, samples_per_prompt, the steps written). Both are written to a temporary name and renamed.

``pretrain_srpo.py --config X --replay DIR`` (``train.replay_dir``) runs the same steps from those files: every
rank reads the step's file in place of the rollout and reward stage, then advantages, trainer log-probs, the
stale-weight guard against the saved rollout log-probs, the update and the checkpoints run as in a live run. No
vLLM engine, weight sync, reward workers or evaluation are built. At the recording run's layout and dtype a replay
reproduces its losses and weights bit for bit (tests/train/test_trainer.py); at another dtype or kernel backend it
is the trainer half of the loop on its own (a bisection aid, and the GPU check in tools/gpu_check/).

:func:`replay_problems` checks a replay directory against the config before any rank starts (the entry point
calls it through ``tasks.inputs.training_input_problems``): every step file present, the same model architecture,
tokenizer and samples_per_prompt.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import torch

from srpo_mcore.config import SRPOConfig
from srpo_mcore.tasks.scoring import ScoredSample

FORMAT_VERSION = 2  # 2: the rewards' verdicts as typed lists (1 kept them in per-sample "extras" dicts; still read)
READABLE_VERSIONS = (1, 2)
INDEX = "index.json"
# The model fields that decide what the saved token ids and log-probs mean; dtype, kernels and layout may differ.
ARCHITECTURE_FIELDS = ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups",
                       "vocab_size", "max_position_embeddings", "rotary_base", "norm_epsilon", "tie_word_embeddings",
                       "add_qkv_bias")


class RestorableSampler(Protocol):
    """What a replay needs of a prompt sampler (``algorithm.sampling``'s, a tier above this package)."""

    def load_state_dict(self, state: dict) -> None: ...


def step_file(step: int) -> str:
    return f"step_{step:06d}.pt"


def model_signature(cfg: SRPOConfig) -> dict:
    return {name: getattr(cfg.model, name) for name in ARCHITECTURE_FIELDS}


def tokenizer_signature(tokenizer) -> dict:
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), separators=(",", ":"))
    return {"size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
            "vocab_sha256": hashlib.sha256(vocab.encode()).hexdigest()}


def rollout_directory(path: str | Path) -> Path:
    """``path`` itself, or ``path/rollouts`` when ``path`` is the recording run's directory."""
    path = Path(path)
    return path / "rollouts" if not (path / INDEX).is_file() and (path / "rollouts" / INDEX).is_file() else path


def _write_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ recording


class RolloutRecorder:
    """Writes each step's scored rollouts (rank 0 only; every rank holds the same list)."""

    def __init__(self, directory: Path, cfg: SRPOConfig, tokenizer, *, is_writer: bool) -> None:
        self.directory, self.is_writer = Path(directory), is_writer
        self.header = {"format_version": FORMAT_VERSION, "model": model_signature(cfg),
                       "tokenizer": tokenizer_signature(tokenizer),
                       "samples_per_prompt": cfg.train.samples_per_prompt}
        if is_writer:
            self.directory.mkdir(parents=True, exist_ok=True)

    def save(self, step: int, samples: list[ScoredSample], sampling_metrics: dict[str, float],
             sampler_states: dict[str, dict]) -> None:
        if not self.is_writer:
            return
        record = encode_samples(samples)
        record.update(step=step, sampling_metrics=dict(sampling_metrics), sampler_states=sampler_states)
        _write_atomically(self.directory / step_file(step), lambda p: torch.save(record, p))
        steps = sorted({step, *self._index().get("steps", [])})
        index = {**self.header, "steps": steps}
        _write_atomically(self.directory / INDEX, lambda p: p.write_text(json.dumps(index, indent=1) + "\n"))

    def _index(self) -> dict:
        path = self.directory / INDEX
        if not path.is_file():
            return {}
        index = json.loads(path.read_text())
        return index if {k: index.get(k) for k in self.header} == self.header else {}  # another run's: start over


def encode_samples(samples: list[ScoredSample]) -> dict:
    """Token ids and log-probs packed into flat tensors with offsets; per-sample scalars as float64 / lists."""
    def packed(rows, dtype):
        rows = [torch.as_tensor(r, dtype=dtype) for r in rows]
        offsets = torch.tensor([0, *torch.tensor([len(r) for r in rows]).cumsum(0).tolist()], dtype=torch.int64)
        return (torch.cat(rows) if rows else torch.zeros(0, dtype=dtype)), offsets

    prompt_tokens, prompt_offsets = packed([s.prompt_ids for s in samples], torch.int32)
    response_tokens, response_offsets = packed([s.response_ids for s in samples], torch.int32)
    rollout_logprobs, _ = packed([s.rollout_logprobs for s in samples], torch.float32)
    return {
        "prompt_tokens": prompt_tokens, "prompt_offsets": prompt_offsets,
        "response_tokens": response_tokens, "response_offsets": response_offsets,
        "rollout_logprobs": rollout_logprobs,
        "rewards": torch.tensor([s.reward for s in samples], dtype=torch.float64),
        "accuracy": torch.tensor([s.accuracy for s in samples], dtype=torch.float64),
        "groups": torch.tensor([s.group for s in samples], dtype=torch.int64),
        "finish_reasons": [s.finish_reason for s in samples],
        "domains": [s.domain for s in samples],
        "prompt_ids": [s.prompt_id for s in samples],
        "response_texts": [s.response_text for s in samples],
        "format_ok": [s.format_ok for s in samples],
        "language_penalty": [s.language_penalty for s in samples],
        "status": [s.status for s in samples],
    }


def decode_samples(record: dict) -> list[ScoredSample]:
    def rows(values, offsets):
        bounds = offsets.tolist()
        return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    prompts = rows(record["prompt_tokens"], record["prompt_offsets"])
    responses = rows(record["response_tokens"], record["response_offsets"])
    logprobs = rows(record["rollout_logprobs"], record["response_offsets"])
    if "extras" in record:  # format 1: the verdicts in one dict per sample
        verdicts = {key: [e.get(key) for e in record["extras"]] for key in ("format_ok", "language_penalty", "status")}
    else:
        verdicts = {key: record[key] for key in ("format_ok", "language_penalty", "status")}
    return [ScoredSample(group=group, prompt_id=prompt_id, domain=domain, prompt_ids=prompt.tolist(),
                         response_ids=response, rollout_logprobs=lp, finish_reason=finish, reward=reward,
                         accuracy=accuracy, response_text=text, format_ok=format_ok,
                         language_penalty=language_penalty, status=status)
            for (group, prompt_id, domain, prompt, response, lp, finish, reward, accuracy, text, format_ok,
                 language_penalty, status) in zip(
                record["groups"].tolist(), record["prompt_ids"], record["domains"], prompts, responses, logprobs,
                record["finish_reasons"], record["rewards"].tolist(), record["accuracy"].tolist(),
                record["response_texts"], verdicts["format_ok"], verdicts["language_penalty"], verdicts["status"],
                strict=True)]


# --------------------------------------------------------------------------------------------------- replay


class RolloutReplay:
    """The recorded run's rollout and reward stage, read back step by step."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = rollout_directory(directory)

    def load_step(self, step: int, samplers: Mapping[str, RestorableSampler]) -> tuple[list[ScoredSample], dict[str, float]]:
        """The step's scored samples and sampling metrics; the samplers are set to the state they had after the
        recorded step drew its batch, so the replay's checkpoints carry the recorded run's sampler state."""
        record = torch.load(self.directory / step_file(step), weights_only=True)
        for domain, sampler in samplers.items():
            if domain in record["sampler_states"]:
                sampler.load_state_dict(record["sampler_states"][domain])
        return decode_samples(record), dict(record["sampling_metrics"])


def replay_problems(cfg: SRPOConfig) -> list[str]:
    """What stops ``train.replay_dir`` from replaying this config, one line each naming the file and field."""
    root = rollout_directory(cfg.train.replay_dir)
    index_path = root / INDEX
    if not index_path.is_file():
        return [f"train.replay_dir={cfg.train.replay_dir}: no {INDEX} there or in its rollouts/ (a directory "
                "written by a run with train.save_rollouts=true)"]
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as e:
        return [f"{index_path}: not JSON ({e})"]
    if index.get("format_version") not in READABLE_VERSIONS:
        return [f"{index_path}: format_version={index.get('format_version')}, this code reads "
                f"{' and '.join(map(str, READABLE_VERSIONS))}"]
    problems = []
    if index.get("samples_per_prompt") != cfg.train.samples_per_prompt:
        problems.append(f"{index_path}: samples_per_prompt={index.get('samples_per_prompt')} but the config has "
                        f"train.samples_per_prompt={cfg.train.samples_per_prompt}")
    for name, value in model_signature(cfg).items():
        saved = index.get("model", {}).get(name)
        if saved != value:
            problems.append(f"{index_path}: model.{name}={saved} but the config has model.{name}={value}")
    if cfg.train.init_checkpoint and Path(cfg.train.init_checkpoint).is_dir():
        from transformers import AutoTokenizer

        mine = tokenizer_signature(AutoTokenizer.from_pretrained(cfg.train.init_checkpoint))
        for name, value in mine.items():
            saved = index.get("tokenizer", {}).get(name)
            if saved != value:
                problems.append(f"{index_path}: tokenizer.{name}={saved} but train.init_checkpoint's tokenizer has "
                                f"{value}")
    missing = [step for step in range(1, cfg.train.steps + 1) if not (root / step_file(step)).is_file()]
    if missing:
        problems.append(f"{root}: no {step_file(missing[0])} ({len(missing)} of train.steps={cfg.train.steps} "
                        f"step files missing; {INDEX} lists steps {_ranges(index.get('steps', []))})")
    return problems


def _ranges(steps: list[int]) -> str:
    if not steps:
        return "none"
    out, start, prev = [], steps[0], steps[0]
    for s in [*steps[1:], None]:
        if s is not None and s == prev + 1:
            prev = s
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if s is not None:
            start = prev = s
    return ", ".join(out)
