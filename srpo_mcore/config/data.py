"""Config section for the data layer: what to train and evaluate on (``DataConfig``).

Config sits below the data package (layers point down; tests/test_layering.py), so the names only the data package
knows (readable file types, row formats, prompt templates) are checked by the function it registers here when it
is imported (``srpo_mcore/data/config_checks.py``). The entry points import the data package before they load a
config; a process that loads one without it meets a bad name where it is first used (loading the files,
rendering the prompts), with the same kind of error naming the file or the template.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from srpo_mcore.config.base import check, check_choice, option


@dataclass
class DataConfig:
    math_train_files: list[str] = option(
        factory=list, help="math training files (JSON list, JSONL, .gz, Parquet)"
    )
    code_train_files: list[str] = option(factory=list, help="code training files (same file types)")
    eval_files: list[str] = option(
        factory=list, help="evaluation files; each is scored and reported separately"
    )
    file_format: str = option(
        "auto", help="row layout of every file: 'auto' (detect from keys) or a format name"
    )
    on_invalid_row: str = option(
        "raise", help="'raise' stops at the first malformed row; 'skip' drops and logs it"
    )
    math_template: str = option("r1_zero_math", help="math prompt template: a registered name or a text file")
    code_template: str = option("r1_zero_code", help="code prompt template: a registered name or a text file")
    # Prompt length limits live in rollout.max_prompt_length; epoch shuffling is the sampler's (train.seed).

    def validate(self, prefix: str = "data") -> None:
        for name in ("math_train_files", "code_train_files", "eval_files"):
            paths = getattr(self, name)
            check(isinstance(paths, list | tuple), f"{prefix}.{name}",
                  f"must be a list of file paths, got {type(paths).__name__}")
        check_choice(self.on_invalid_row, ("raise", "skip"), f"{prefix}.on_invalid_row")
        for name_check in _NAME_CHECKS:
            name_check(self, prefix)


_NAME_CHECKS: list[Callable[[DataConfig, str], None]] = []


def register_name_check(name_check: Callable[[DataConfig, str], None]) -> Callable[[DataConfig, str], None]:
    """Add ``name_check(section, prefix)`` to ``DataConfig.validate``; it raises ``ConfigError`` naming the key of
    a name it does not know. The data package registers one on import (registering it again is a no-op)."""
    if name_check not in _NAME_CHECKS:
        _NAME_CHECKS.append(name_check)
    return name_check
