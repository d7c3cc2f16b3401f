"""Rule-based rewards: math answers (math-verify), code tests (a bubblewrap sandbox), format, language mixing.

The trainer uses :class:`RewardManager` (``manager.py``); the pieces are usable on their own:
``math_answer`` (answer extraction), ``math_verify_pool`` (``MathVerifier``), ``format`` (format checks and
the language-mix measure), ``code_reward`` (tests and output comparison), ``sandbox`` (``Sandbox``; also
``python -m srpo_mcore.rewards.sandbox PROGRAM.py``); their throughput benchmark is ``python -m benchmarks.rewards``.

Names are imported lazily, so that the math worker processes (``python -m
srpo_mcore.rewards._math_worker``) do not import the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "RewardManager": "manager", "RewardRequest": "manager", "RewardResult": "manager",
    "MathVerifier": "math_verify_pool", "MathVerdict": "math_verify_pool",
    "Sandbox": "sandbox", "SandboxLimits": "sandbox", "SandboxResult": "sandbox", "HarnessTest": "sandbox",
    "extract_answer": "math_answer", "format_ok": "format", "language_mix": "format",
    "score_code": "code_reward", "score_program": "code_reward",
}
__all__ = ["HarnessTest", "MathVerdict", "MathVerifier", "RewardManager", "RewardRequest", "RewardResult", "Sandbox",
           "SandboxLimits", "SandboxResult", "extract_answer", "format_ok", "language_mix", "score_code",
           "score_program"]

if TYPE_CHECKING:
    from srpo_mcore.rewards.code_reward import score_code, score_program
    from srpo_mcore.rewards.format import format_ok, language_mix
    from srpo_mcore.rewards.manager import RewardManager, RewardRequest, RewardResult
    from srpo_mcore.rewards.math_answer import extract_answer
    from srpo_mcore.rewards.math_verify_pool import MathVerdict, MathVerifier
    from srpo_mcore.rewards.sandbox import HarnessTest, Sandbox, SandboxLimits, SandboxResult


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'srpo_mcore.rewards' has no attribute {name!r}")
    return getattr(importlib.import_module(f"srpo_mcore.rewards.{_EXPORTS[name]}"), name)
