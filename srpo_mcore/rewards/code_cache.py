"""Code verdicts shared by identical programs.

A GRPO group samples the same prompt many times, and a policy that has learnt a task writes the same program again
and again (the quickstart's stage 2: most of a group's 8 programs are the same line). Running each copy in the
sandbox costs a launch (a round trip to the warm sandbox and a forked test process: ~1.6 ms of CPU for a one-line
program, docs/benchmarks.md "Rewards") and teaches nothing new.
:class:`CodeVerdictCache` runs each distinct ``(program, tests)`` once and hands its :class:`CodeScore` to every copy:
concurrent copies wait for the first one's launch (no duplicate launches in flight), later ones read the kept verdict
(least recently used first out, ``rewards.code_cache_size`` entries).

Only verdicts that another run would repeat are kept: every test ``ok``, ``wrong_answer`` or ``runtime_error``.
A timeout, a memory or output limit, or a sandbox failure can depend on the machine's load, so such a verdict is
handed to the copies that were already waiting for it and then dropped: the next copy runs again. A program whose
output depends on chance (``random`` unseeded, the clock) gets one draw per cache entry instead of one per copy.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import replace

from srpo_mcore.rewards.code_reward import CodeScore

REPEATABLE_STATUSES = frozenset({"ok", "wrong_answer", "runtime_error"})


def repeatable(score: CodeScore) -> bool:
    """Would running the program again give the same verdict (no limit hit, no sandbox trouble)?"""
    return all(s in REPEATABLE_STATUSES for s in score.test_statuses) and score.status in REPEATABLE_STATUSES


class CodeVerdictCache:
    """Thread-safe ``key -> CodeScore`` with in-flight sharing; ``size`` 0 disables it (every call runs)."""

    def __init__(self, size: int):
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.size = size
        self._entries: OrderedDict[Hashable, Future] = OrderedDict()
        self._lock = threading.Lock()
        self.runs = 0  # calls that ran the program
        self.shared = 0  # calls answered by another call's run

    def score(self, key: Hashable, run: Callable[[], CodeScore]) -> CodeScore:
        """``run()``'s verdict for ``key``: from the cache, from a run in flight, or by running it."""
        if self.size == 0:
            self.runs += 1
            return run()
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if entry is not None:
                self._entries.move_to_end(key)
                self.shared += 1
            else:
                entry = self._entries[key] = Future()
                self.runs += 1
                self._evict()
        if not owner:
            return _copy(entry.result())  # another call runs (or ran) it
        try:
            score = run()
        except BaseException as e:
            self._forget(key, entry)
            entry.set_exception(e)
            raise
        if not repeatable(score):
            self._forget(key, entry)
        entry.set_result(score)
        return _copy(score)

    def _forget(self, key: Hashable, entry: Future) -> None:
        with self._lock:
            if self._entries.get(key) is entry:
                del self._entries[key]

    def _evict(self) -> None:  # under the lock: drop the least recently used finished verdicts beyond size
        for key in list(self._entries):
            if len(self._entries) <= self.size:
                break
            if self._entries[key].done():
                del self._entries[key]


def _copy(score: CodeScore) -> CodeScore:
    """Each caller gets its own statuses list (callers put it into their result's details)."""
    return replace(score, test_statuses=list(score.test_statuses))
