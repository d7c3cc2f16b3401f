"""Math answer verification with math-verify in a pool of worker processes.

    with MathVerifier(workers=2, timeout_s=5.0, memory_mb=2048) as verifier:
        verdicts = verifier.verify_many([("\\frac{1}{2}", "0.5"), ("025", "25")])

Each answer is first tried by the exact string checks of :mod:`math_answer` (same canonical text; integers,
so ``025`` equals ``25``); the rest go to math-verify, one task per worker at a time. A worker that has not
answered within ``timeout_s`` (math-verify's own SIGALRM timeouts cannot interrupt C-level loops such as a
huge integer power) is killed and replaced, and its task scores 0. Each worker's address space is capped
(``RLIMIT_AS``). Verdicts are cached per (gold, answer), since a GRPO group repeats answers.
"""

from __future__ import annotations

import json
import logging
import os
import select
import selectors
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from srpo_mcore.rewards.math_answer import quick_verdict

logger = logging.getLogger(__name__)
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
_START_TIMEOUT_S = 120.0
_MAX_FAILED_STARTS = 3  # in a row, before the pool gives up


@dataclass(frozen=True)
class MathVerdict:
    correct: bool
    status: str  # ok | fast_path | cached | timeout | unparsable_gold | unparsable_answer | error: ... | ...
    seconds: float = 0.0  # time a worker spent on it (0 when no worker was needed)


class _Worker:
    def __init__(self, memory_mb: int, timeout_s: float):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "srpo_mcore.rewards._math_worker", str(memory_mb), str(timeout_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True, start_new_session=True)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buffer = b""
        self.ready = False
        self.started = time.monotonic()
        self.task: int | None = None  # index in the current batch
        self.last_gold: str | None = None  # its parsed form is cached in this worker
        self.sent = 0.0
        self.deadline = 0.0
        self.dead = False

    def send(self, index: int, gold: str, answer: str, timeout_s: float) -> None:
        self.task, self.sent = index, time.monotonic()
        self.deadline = self.sent + timeout_s
        line = json.dumps({"id": index, "gold": gold, "answer": answer}) + "\n"
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()

    def read_lines(self) -> list[dict] | None:
        """Complete messages available now; ``None`` at EOF (the worker died)."""
        try:
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(x) for x in lines if x.strip()]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


def _next_for(queue: list[tuple[int, str, str]], gold: str | None, window: int = 64) -> int:
    """Index in ``queue`` (taken from the end) of the next task, preferring one with the worker's last gold,
    whose parse that worker has cached (a group's responses share their gold)."""
    for k in range(len(queue) - 1, max(-1, len(queue) - 1 - window), -1):
        if queue[k][1] == gold:
            return k
    return len(queue) - 1


class MathVerifier:
    """A pool of math-verify worker processes with per-task deadlines; see the module docstring."""

    def __init__(self, workers: int = 2, timeout_s: float = 5.0, memory_mb: int = 2048, cache_size: int = 100_000,
                 max_answer_chars: int = 1000, *, fast_path: bool = True):
        self.timeout_s = float(timeout_s)
        self.memory_mb = int(memory_mb)
        self.max_answer_chars = int(max_answer_chars)
        self.fast_path = fast_path
        self._cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._cache_size = int(cache_size)
        self._lock = threading.Lock()
        self._workers = [self._spawn() for _ in range(max(1, int(workers)))]
        self._failed_starts = 0
        self.restarts = 0

    def _spawn(self) -> _Worker:
        return _Worker(self.memory_mb, self.timeout_s)

    # -- public --------------------------------------------------------------------------------------------

    def verify(self, gold: str, answer: str) -> MathVerdict:
        return self.verify_many([(gold, answer)])[0]

    def verify_many(self, pairs: Sequence[tuple[str | None, str | None]]) -> list[MathVerdict]:
        """Verdicts for (gold, answer) pairs, both already extracted/normalised (``None`` scores 0)."""
        results: list[MathVerdict | None] = [None] * len(pairs)
        pending: list[tuple[int, str, str]] = []
        for i, (gold, answer) in enumerate(pairs):
            if not gold:
                results[i] = MathVerdict(False, "no_gold")
            elif not answer:
                results[i] = MathVerdict(False, "no_answer")
            elif self.max_answer_chars and len(answer) > self.max_answer_chars:
                results[i] = MathVerdict(False, "answer_too_long")
            else:
                quick = quick_verdict(gold, answer) if self.fast_path else None
                if quick is not None:
                    results[i] = MathVerdict(quick, "fast_path")
                elif (cached := self._cache.get((gold, answer))) is not None:
                    results[i] = MathVerdict(cached, "cached")
                else:
                    pending.append((i, gold, answer))
        if pending:
            with self._lock:
                self._run(pending, results)
        return [r if r is not None else MathVerdict(False, "error: lost") for r in results]

    def wait_ready(self, timeout_s: float = _START_TIMEOUT_S) -> None:
        """Block until every worker has imported math-verify (the first batch would wait anyway)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            for w in self._workers:
                while not w.ready:
                    left = deadline - time.monotonic()
                    if left <= 0 or w.proc.poll() is not None:
                        raise RuntimeError("a math-verify worker did not start")
                    ready, _, _ = select.select([w.proc.stdout], [], [], min(left, 1.0))
                    msgs = w.read_lines() if ready else []
                    if msgs is None:
                        raise RuntimeError("a math-verify worker died while starting")
                    w.ready = w.ready or any(m.get("ready") for m in msgs)

    def close(self) -> None:
        with self._lock:
            for w in self._workers:
                w.kill()
            self._workers = []

    def __enter__(self) -> MathVerifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the dispatch loop ---------------------------------------------------------------------------------

    def _run(self, pending: list[tuple[int, str, str]], results: list[MathVerdict | None]) -> None:
        if not self._workers:
            raise RuntimeError("MathVerifier is closed")
        first_of: dict[tuple[str, str], int] = {}
        duplicates: dict[int, int] = {}  # identical pairs in one batch are verified once
        unique = []
        for i, g, a in pending:
            if (g, a) in first_of:
                duplicates[i] = first_of[(g, a)]
            else:
                first_of[(g, a)] = i
                unique.append((i, g, a))
        queue = list(reversed(unique))  # pop() takes them in order
        pair_of = {i: (g, a) for i, g, a in unique}
        retried: set[int] = set()
        outstanding = len(unique)
        sel = selectors.DefaultSelector()
        try:
            for w in self._workers:
                sel.register(w.proc.stdout, selectors.EVENT_READ, w)
            while outstanding:
                for w in self._workers:
                    if w.proc.poll() is not None:
                        w.dead = True
                    if w.ready and w.task is None and queue and not w.dead:
                        i, g, a = queue.pop(_next_for(queue, w.last_gold))
                        w.last_gold = g
                        try:
                            w.send(i, g, a, self.timeout_s)
                        except OSError:
                            w.dead = True
                now = time.monotonic()
                deadlines = [w.deadline for w in self._workers if w.task is not None]
                deadlines += [w.started + _START_TIMEOUT_S for w in self._workers if not w.ready]
                wait = min(deadlines, default=now + 1.0) - now
                for key, _ in sel.select(min(max(wait, 0.0), 1.0)):
                    w = key.data
                    msgs = w.read_lines()
                    if msgs is None:
                        w.dead = True
                        continue
                    for msg in msgs:
                        if msg.get("ready"):
                            w.ready = True
                        elif w.task is not None and msg.get("id") == w.task:
                            ok = bool(msg["ok"])
                            results[w.task] = MathVerdict(ok, msg.get("status", "ok"), time.monotonic() - w.sent)
                            self._remember(pair_of[w.task], ok)
                            w.task = None
                            outstanding -= 1
                now = time.monotonic()
                for k, w in enumerate(self._workers):
                    stuck = w.task is not None and now >= w.deadline
                    if w.ready:
                        self._failed_starts = 0
                    elif w.dead or now >= w.started + _START_TIMEOUT_S:
                        self._failed_starts += 1
                        if self._failed_starts >= _MAX_FAILED_STARTS:
                            raise RuntimeError("math-verify workers keep failing to start: check "
                                               "rewards.math_memory_mb and that math-verify imports here")
                        w.dead = True
                    if not (stuck or w.dead):
                        continue
                    if w.task is not None:
                        if w.dead and w.task not in retried:
                            # Killed from outside, or a crash: give the task one more worker.
                            retried.add(w.task)
                            queue.append((w.task, *pair_of[w.task]))
                        else:
                            results[w.task] = MathVerdict(False, "timeout" if stuck and not w.dead else "worker_died",
                                                          now - w.sent)
                            outstanding -= 1
                        w.task = None
                    sel.unregister(w.proc.stdout)
                    w.kill()
                    self.restarts += 1
                    logger.warning("math worker replaced (%s)", "stuck past the deadline" if stuck else "it died")
                    self._workers[k] = self._spawn()
                    sel.register(self._workers[k].proc.stdout, selectors.EVENT_READ, self._workers[k])
        finally:
            sel.close()
        for i, j in duplicates.items():
            results[i] = results[j]

    def _remember(self, key: tuple[str, str], ok: bool) -> None:
        if self._cache_size <= 0:
            return
        self._cache[key] = ok
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
