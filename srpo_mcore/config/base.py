"""Shared pieces of the typed configuration: the error type and the field helper.

Every config section is a dataclass whose fields carry a one-line ``help`` (shown by ``--print-config``
and in error messages). Sections check their own fields in ``validate()``; checks that span sections live
in ``srpo_mcore/config/__init__.py``. Errors name the dotted key and say what to change.
"""

from __future__ import annotations

import dataclasses
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing, mistyped or inconsistent. ``key`` is the dotted path."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config error at '{key}': {message}")


def option(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING):  # noqa: A002
    """A dataclass field with a help string: ``x: int = option(3, "what x is")``."""
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def check(condition: bool, key: str, message: str) -> None:
    """Raise ``ConfigError(key, message)`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, message)


def check_choice(value: Any, choices: tuple, key: str) -> None:
    check(value in choices, key, f"{value!r} is not one of {', '.join(map(repr, choices))}")


def check_positive(value: float, key: str, *, allow_zero: bool = False) -> None:
    if allow_zero:
        check(value >= 0, key, f"must be >= 0, got {value}")
    else:
        check(value > 0, key, f"must be > 0, got {value}")
