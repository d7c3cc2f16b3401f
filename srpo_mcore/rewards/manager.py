"""The trainer's entry to rewards: score a batch at once, or submit responses as they arrive and collect later.

    with RewardManager(cfg.rewards) as rewards:
        results = rewards.score([RewardRequest("math", text, "\\frac{1}{2}"),
                                 RewardRequest("code", text, code_record)])
        rewards_tensor = [r.reward for r in results]

        futures = rewards.submit(requests_of_one_prompt)   # returns at once; scoring runs in the background
        ...                                                # (the trainer keeps generating meanwhile)
        results = [f.result() for f in futures]

Math answers are verified in a pool of ``math_workers`` processes, fed by one dispatch thread (a submitted
batch's math requests go to the pool together; batches queue behind each other); code runs in sandbox
launches on ``code_workers`` threads (one launch per response, all its tests). Math and code run at the same
time, and both beside the caller. The format and language checks run on the thread that scored the response.
Scoring never raises for bad responses or bad ground truth: those get ``accuracy`` 0 and a ``status`` saying why.

``reward = accuracy_weight * accuracy - format_weight * (not format_ok) - language_penalty_weight *
language_penalty`` (see ``srpo_mcore/config/rewards.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from srpo_mcore.config.rewards import RewardConfig
from srpo_mcore.rewards.code_cache import CodeVerdictCache
from srpo_mcore.rewards.code_reward import CodeScore, parse_ground_truth, score_program
from srpo_mcore.rewards.format import extract_code, format_ok, language_penalty
from srpo_mcore.rewards.math_answer import extract_answer, normalize_gold
from srpo_mcore.rewards.math_verify_pool import MathVerifier
from srpo_mcore.rewards.sandbox import Sandbox, limits_from_config

logger = logging.getLogger(__name__)
DOMAINS = ("math", "code")

T = TypeVar("T")


@dataclass
class RewardRequest:
    """One response to score. ``ground_truth``: the gold answer (math), or the tests - a ``CodeRecord`` or
    ``{"tests": [...], "entry_point": ..., "time_limit": ...}`` (code). ``prompt``: the problem as posed (the
    record's text, not the template around it): the language penalty measures the response against its script."""

    domain: str
    response: str
    ground_truth: Any
    id: str = ""
    prompt: str = ""


@dataclass
class RewardResult:
    reward: float
    accuracy: float  # 1.0 right answer / every test passed, else 0.0
    format_ok: bool
    language_penalty: float  # 0..1: prose in another script than the prompt's, beyond the threshold
    pass_fraction: float  # code: tests passed / tests; math: = accuracy
    status: str  # ok | wrong_answer | no_answer | no_code | timeout | runtime_error | ... (see details)
    details: dict = field(default_factory=dict)


class RewardManager:
    """Scores batches of responses; holds the math workers and the sandboxes until :meth:`close`."""

    def __init__(self, config: RewardConfig | None = None, *, domains: Sequence[str] = DOMAINS):
        self.config = config or RewardConfig()
        self.config.validate()
        unknown = set(domains) - set(DOMAINS)
        if unknown:
            raise ValueError(f"unknown reward domains {sorted(unknown)}; expected some of {DOMAINS}")
        c = self.config
        self.math: MathVerifier | None = None
        self.sandbox: Sandbox | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.code_verdicts = CodeVerdictCache(c.code_cache_size)  # identical programs of a group run once
        self._math_dispatch: ThreadPoolExecutor | None = None
        if "math" in domains:
            self.math = MathVerifier(c.math_workers, c.math_timeout_seconds, c.math_memory_mb, c.math_cache_size,
                                     c.math_max_answer_chars)
            # One thread: MathVerifier runs one batch at a time over its worker processes.
            self._math_dispatch = ThreadPoolExecutor(1, thread_name_prefix="math-reward")
        if "code" in domains:
            self.sandbox = Sandbox(limits_from_config(c), backend=c.sandbox_backend, python=c.sandbox_python,
                                   uid=c.sandbox_uid, fallback_uid_base=c.sandbox_fallback_uid_base,
                                   reuse=c.sandbox_reuse_launches)
            self._pool = ThreadPoolExecutor(c.code_workers, thread_name_prefix="code-reward")

    # -- public --------------------------------------------------------------------------------------------

    def score(self, requests: Sequence[RewardRequest]) -> list[RewardResult]:
        """Score a batch (any mix of domains); results are in request order."""
        return [f.result() for f in self.submit(requests)]

    def submit(self, requests: Sequence[RewardRequest]) -> list[Future[RewardResult]]:
        """Start scoring a batch (any mix of domains) and return at once: one future per request, in request
        order. Code requests each take a sandbox thread; the batch's math requests are verified together on
        the math dispatch thread. Requests are checked here (an unknown domain raises before anything starts)."""
        for r in requests:
            if r.domain not in DOMAINS:
                raise ValueError(f"request {r.id or '?'}: domain {r.domain!r} is not one of {DOMAINS}")
            if (r.domain == "math" and self.math is None) or (r.domain == "code" and self.sandbox is None):
                raise ValueError(f"this RewardManager was built without the {r.domain!r} domain")
        futures: list[Future[RewardResult]] = [
            self._built(self._pool).submit(self._score_code, r) if r.domain == "code" else Future()
            for r in requests]
        math = [(r, f) for r, f in zip(requests, futures) if r.domain == "math"]
        if math:
            batch = self._built(self._math_dispatch).submit(self._score_math, [r for r, _ in math])
            batch.add_done_callback(lambda done: _fan_out(done, [f for _, f in math]))
        return futures

    def close(self) -> None:
        for pool in (self._pool, self._math_dispatch):
            if pool is not None:
                pool.shutdown(wait=True)
        if self.math is not None:
            self.math.close()
        if self.sandbox is not None:
            self.sandbox.close()

    def __enter__(self) -> RewardManager:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------------------

    @staticmethod
    def _built(part: T | None) -> T:
        """A domain's verifier, sandbox or pool; ``score`` refuses requests of a domain built without them."""
        if part is None:
            raise RuntimeError("this RewardManager was built without the request's domain")
        return part

    def _score_math(self, requests: list[RewardRequest]) -> list[RewardResult]:
        c = self.config
        golds = [normalize_gold(r.ground_truth) for r in requests]
        answers = [extract_answer(r.response, require_think_close=c.require_think_close) for r in requests]
        verdicts = self._built(self.math).verify_many(list(zip(golds, answers)))
        out = []
        for r, gold, answer, v in zip(requests, golds, answers, verdicts):
            if v.correct:
                status = "ok"
            elif v.status in ("ok", "fast_path", "cached"):
                status = "wrong_answer"
            else:
                status = v.status
            details = {"answer": (answer or "")[:200], "gold": gold, "verifier": v.status}
            accuracy = 1.0 if v.correct else 0.0
            out.append(self._compose(r, accuracy, accuracy, status, details))
        return out

    def _score_code(self, r: RewardRequest) -> RewardResult:
        score = self._run_code(r)
        details = {"passed": score.passed, "total": score.total, "tests": score.test_statuses, "message": score.message}
        return self._compose(r, score.accuracy, score.pass_fraction, score.status, details)

    def _run_code(self, r: RewardRequest) -> CodeScore:
        c = self.config
        try:
            program = extract_code(r.response, require_think_close=c.require_think_close)
            tests = parse_ground_truth(r.ground_truth)
            return self.code_verdicts.score(
                (program, repr(tests)),
                lambda: score_program(program, tests, self._built(self.sandbox), float_tolerance=c.code_float_tolerance,
                                      stop_after_timeout=c.code_stop_after_timeout))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            logger.warning("request %s: bad code ground truth: %s", r.id or "?", e)
            return CodeScore(0.0, 0.0, "bad_ground_truth", message=str(e)[:500])
        except Exception as e:  # noqa: BLE001 - one response's sandbox trouble must not end the step
            logger.exception("request %s: sandbox failure", r.id or "?")
            return CodeScore(0.0, 0.0, "sandbox_error", message=f"{type(e).__name__}: {e}"[:500])

    def _compose(self, r: RewardRequest, accuracy: float, pass_fraction: float, status: str,
                 details: dict) -> RewardResult:
        c = self.config
        fmt = format_ok(r.response, c.math_format if r.domain == "math" else c.code_format)
        penalty, mix = language_penalty(r.response, c.language_penalty_threshold, c.language_min_units, r.prompt)
        reward = (c.accuracy_weight * accuracy - c.format_weight * (0.0 if fmt else 1.0)
                  - c.language_penalty_weight * penalty)
        details["language_mix"] = round(mix.fraction, 4)
        details["language_expected"] = f"{mix.expected} ({mix.expected_from})"
        return RewardResult(reward=reward, accuracy=accuracy, format_ok=fmt, language_penalty=penalty,
                            pass_fraction=pass_fraction, status=status, details=details)


def _fan_out(batch: Future, futures: list[Future]) -> None:
    """Hand a batch future's list of results (or its exception) to the per-request futures."""
    error = batch.exception()
    if error is not None:
        for f in futures:
            f.set_exception(error)
        return
    for f, result in zip(futures, batch.result(), strict=True):
        f.set_result(result)
