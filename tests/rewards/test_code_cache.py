"""CodeVerdictCache: identical programs run once (also when they arrive at once), limit verdicts are not kept,
errors are not cached, size bounds the entries, size 0 runs everything."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from srpo_mcore.rewards.code_cache import CodeVerdictCache, repeatable
from srpo_mcore.rewards.code_reward import CodeScore


def verdict(*statuses):
    ok = all(s == "ok" for s in statuses)
    first = next((s for s in statuses if s != "ok"), "ok")
    return CodeScore(1.0 if ok else 0.0, statuses.count("ok") / len(statuses), first, statuses.count("ok"),
                     len(statuses), list(statuses))


class Runner:
    def __init__(self, score, delay=0.0):
        self.score, self.delay, self.calls = score, delay, 0
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        return self.score


def test_identical_programs_run_once_even_when_concurrent():
    cache = CodeVerdictCache(16)
    run = Runner(verdict("ok", "wrong_answer"), delay=0.05)
    with ThreadPoolExecutor(8) as pool:
        scores = list(pool.map(lambda _: cache.score("prog-a", run), range(8)))
    assert run.calls == 1 and cache.runs == 1 and cache.shared == 7
    assert all(s == verdict("ok", "wrong_answer") for s in scores)
    scores[0].test_statuses.append("x")  # a copy's list is its own
    assert cache.score("prog-a", run).test_statuses == ["ok", "wrong_answer"] and run.calls == 1


def test_distinct_programs_each_run():
    cache = CodeVerdictCache(16)
    runs = {k: Runner(verdict("ok")) for k in "abc"}
    for k in "abcabc":
        cache.score(k, runs[k])
    assert [r.calls for r in runs.values()] == [1, 1, 1]


@pytest.mark.parametrize("statuses", [("ok", "timeout"), ("memory_limit",), ("sandbox_error",), ("output_limit",),
                                      ("timeout", "not_run")])
def test_load_dependent_verdicts_are_not_kept(statuses):
    cache = CodeVerdictCache(16)
    run = Runner(verdict(*statuses))
    assert not repeatable(run.score)
    cache.score("p", run)
    cache.score("p", run)
    assert run.calls == 2


def test_a_failed_run_is_not_cached_and_waiters_see_its_error():
    cache = CodeVerdictCache(16)

    def boom():
        time.sleep(0.05)
        raise OSError("launch failed")

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(cache.score, "p", boom) for _ in range(3)]
    assert all(isinstance(f.exception(), OSError) for f in futures)
    run = Runner(verdict("ok"))
    assert cache.score("p", run).accuracy == 1.0 and run.calls == 1


def test_size_bounds_entries_least_recently_used_first():
    cache = CodeVerdictCache(2)
    runs = {k: Runner(verdict("ok")) for k in "abc"}
    cache.score("a", runs["a"])
    cache.score("b", runs["b"])
    cache.score("a", runs["a"])  # a is now the most recent
    cache.score("c", runs["c"])  # evicts b
    cache.score("a", runs["a"])
    cache.score("b", runs["b"])
    assert runs["a"].calls == 1 and runs["b"].calls == 2


def test_size_zero_runs_every_call():
    cache = CodeVerdictCache(0)
    run = Runner(verdict("ok"))
    cache.score("p", run)
    cache.score("p", run)
    assert run.calls == 2
