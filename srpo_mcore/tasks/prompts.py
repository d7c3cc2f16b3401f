"""Training prompts: records from the data files, rendered with the domain's template and tokenized once.

Prompts are numbered ``0..N-1`` across domains (math first, then code); the samplers work on those numbers,
one sampler per domain so the stage schedule can mix them in a configured ratio. Each prompt also has a stable
``key``, a hash of its record's content (:func:`prompt_key`), which keys the samplers' checkpointed state. Prompts longer than
``rollout.max_prompt_length`` tokens are dropped at load time (and counted), never truncated.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from srpo_mcore.config import SRPOConfig
from srpo_mcore.data.loaders import load_many
from srpo_mcore.data.records import CodeRecord, MathRecord
from srpo_mcore.data.templates import get_template

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prompt:
    index: int
    domain: str  # "math" | "code"
    record: MathRecord | CodeRecord
    text: str
    token_ids: tuple[int, ...]
    key: str = ""  # stable identity: prompt_key(record), "#n" appended to the n-th repeat of the same content

    @property
    def ground_truth(self):
        """What the reward needs: the gold answer (math) or the record with its tests (code)."""
        return self.record.answer if self.domain == "math" else self.record


# What a record's identity is made of: what the policy is asked and how it is scored. Not its id or source (the
# loaders number rows of raw formats by position) nor curation annotations (difficulty, solve rate, meta).
_NOT_IDENTITY = ("id", "source", "difficulty", "solve_rate", "meta", "reference_solution")


def prompt_key(record: MathRecord | CodeRecord) -> str:
    """A hash of the record's content: the same wherever the record sits in its file, different once its problem,
    answer or tests are edited."""
    content = {k: v for k, v in record.to_dict().items() if k not in _NOT_IDENTITY}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of a prompt: the tokenizer's BOS (when it has one; Qwen2.5's has none) + the text."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + ids


def load_prompt_records(files: list[str], domain: str, cfg: SRPOConfig):
    if not files:
        return []
    return load_many(files, format=cfg.data.file_format, on_invalid=cfg.data.on_invalid_row, domain=domain)


class PromptTable:
    def __init__(self, prompts: list[Prompt], dropped_too_long: dict[str, int]):
        self.prompts = prompts
        self.dropped_too_long = dropped_too_long
        self.by_domain = {d: [p.index for p in prompts if p.domain == d] for d in ("math", "code")}

    def __getitem__(self, index: int) -> Prompt:
        return self.prompts[index]

    def __len__(self) -> int:
        return len(self.prompts)

    @classmethod
    def from_records(cls, records_by_domain: dict[str, list], cfg: SRPOConfig, tokenizer) -> PromptTable:
        prompts: list[Prompt] = []
        dropped = {}
        repeats: dict[str, int] = {}
        for domain in ("math", "code"):
            records = records_by_domain.get(domain, [])
            template = get_template(getattr(cfg.data, f"{domain}_template"), domain)
            dropped[domain] = 0
            for record in records:
                text = template.render(record)
                ids = encode_prompt(tokenizer, text)
                if len(ids) > cfg.rollout.max_prompt_length:
                    dropped[domain] += 1
                    continue
                key = prompt_key(record)
                repeats[key] = repeats.get(key, 0) + 1
                key += f"#{repeats[key]}" if repeats[key] > 1 else ""
                prompts.append(Prompt(len(prompts), domain, record, text, tuple(ids), key))
        table = cls(prompts, dropped)
        if not table.prompts:
            raise ValueError("no training prompts: data.math_train_files / data.code_train_files are empty, or "
                             f"every prompt exceeds rollout.max_prompt_length={cfg.rollout.max_prompt_length}")
        return table

    @classmethod
    def load(cls, cfg: SRPOConfig, tokenizer, files: dict[str, list[str]] | None = None) -> PromptTable:
        files = files or {"math": cfg.data.math_train_files, "code": cfg.data.code_train_files}
        records = {d: load_prompt_records(f, d, cfg) for d, f in files.items()}
        table = cls.from_records(records, cfg, tokenizer)
        for domain, n in table.dropped_too_long.items():
            if n:
                logger.warning("dropped %d %s prompts longer than rollout.max_prompt_length=%d tokens", n, domain,
                               cfg.rollout.max_prompt_length)
        return table

    @classmethod
    def load_mixed(cls, cfg: SRPOConfig, tokenizer, files: list[str]) -> PromptTable:
        """Prompts from files that may hold either domain (evaluation sets)."""
        records = load_many(files, format=cfg.data.file_format, on_invalid=cfg.data.on_invalid_row) if files else []
        by_domain: dict[str, list] = {"math": [r for r in records if isinstance(r, MathRecord)],
                     "code": [r for r in records if isinstance(r, CodeRecord)]}
        return cls.from_records(by_domain, cfg, tokenizer)
