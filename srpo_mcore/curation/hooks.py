"""The curation hooks that need engines this package does not own, built from the real components:

* :func:`verify_reference` / :class:`ReferenceChecker` - the ``reference_check`` step: a code record's reference
  solution must pass its own tests through the code reward's sandbox (``score_program``, the harness responses
  are scored with); a math record's gold must parse the way the reward parses it. Records without a reference
  solution are "nothing to check" (``None``).

      python -m srpo_mcore.curation.curate ... --verify-reference srpo_mcore.curation.hooks:verify_reference

* :class:`ModelGrader` - the ``difficulty`` step's ``solve_rate``: pass@k with a model, i.e. ``k`` samples per
  problem through the rollout engine and the rewards. It runs ``python -m srpo_mcore.eval --data`` (which starts
  its own torchrun job) and reads each problem's pass@1 back from its per-sample results.

      python -m srpo_mcore.curation.curate ... --grade-with-model HF_DIR [--grade-options "--tp 2 --max-tokens 4096"]
"""

from __future__ import annotations

import atexit
import json
import shlex
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from srpo_mcore.curation.checks import math_answer_problem
from srpo_mcore.data.files import write_jsonl
from srpo_mcore.data.records import MathRecord, Record


class Verdict:
    """A reference check's outcome: truthy when it passed; ``detail`` says why not (shown in the report)."""

    def __init__(self, passed: bool, detail: str = ""):
        self.passed, self.detail = passed, detail

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"Verdict({self.passed}, {self.detail!r})"


class ReferenceChecker:
    """``verify_reference`` with its own sandbox (built on first use from ``RewardConfig``; :meth:`close` it)."""

    def __init__(self, config=None):
        self.config = config
        self._rewards = None

    def __call__(self, record: Record) -> Verdict | None:
        if isinstance(record, MathRecord):
            problem = math_answer_problem(record)
            return Verdict(problem is None, problem or "")
        if not record.reference_solution:
            return None
        from srpo_mcore.rewards.code_reward import score_program

        if self._rewards is None:
            from srpo_mcore.rewards import RewardManager

            self._rewards = RewardManager(self.config, domains=("code",))  # builds the sandbox as the trainer does
        c = self._rewards.config
        score = score_program(record.reference_solution, record, self._rewards.sandbox,
                              float_tolerance=c.code_float_tolerance, stop_after_timeout=c.code_stop_after_timeout)
        detail = f"{score.status}: {score.passed}/{score.total} tests passed" + (
            f"; {score.message}" if score.message else "")
        return Verdict(score.accuracy == 1.0, "" if score.accuracy == 1.0 else detail[:300])

    def close(self) -> None:
        if self._rewards is not None:
            self._rewards.close()
            self._rewards = None


_default_checker: ReferenceChecker | None = None


def verify_reference(record: Record) -> Verdict | None:
    """The ``--verify-reference`` hook, with the default reward settings (one sandbox per process)."""
    global _default_checker
    if _default_checker is None:
        _default_checker = ReferenceChecker()
        atexit.register(_default_checker.close)
    return _default_checker(record)


# ------------------------------------------------------------------------------------------ pass@k grading

_OWNED_BY_GRADER = ("--hf", "--mcore", "--data", "--benchmark", "--k", "--limit", "--out")


class ModelGrader:
    """``solve_rate(records, k)``: each record's pass@1 over ``k`` samples from the model at ``hf_dir``.

    ``eval_options`` are passed on to ``python -m srpo_mcore.eval`` (``--tp``, ``--max-tokens``, ``--config``,
    ``--set key=value``, ...). The evaluation's files (summary.json, samples.jsonl) stay in ``work_dir`` when one
    is given, else in a temporary directory that is removed."""

    def __init__(self, hf_dir: str | Path, eval_options: Sequence[str] | str = (), work_dir: str | Path | None = None):
        self.hf_dir = Path(hf_dir)
        self.options = shlex.split(eval_options) if isinstance(eval_options, str) else list(eval_options)
        clash = [o for o in self.options if o.split("=")[0] in _OWNED_BY_GRADER]
        if clash:
            raise ValueError(f"grading options may not set {', '.join(clash)}: the grader sets them")
        if not (self.hf_dir / "config.json").is_file():
            raise ValueError(f"--grade-with-model {self.hf_dir}: not an HF checkpoint directory (no config.json)")
        self.work_dir = Path(work_dir) if work_dir else None

    def __call__(self, records: Sequence[Record], k: int) -> list[float]:
        if not records:
            return []
        if self.work_dir is not None:
            return self._grade(records, k, self.work_dir)
        with tempfile.TemporaryDirectory(prefix="srpo-grade-") as tmp:
            return self._grade(records, k, Path(tmp))

    def _grade(self, records: Sequence[Record], k: int, work: Path) -> list[float]:
        data = work / "to_grade.jsonl"
        write_jsonl((r.to_dict() for r in records), data)
        cmd = [sys.executable, "-m", "srpo_mcore.eval", "--hf", str(self.hf_dir), "--data", str(data), "--k", str(k),
               "--out", str(work / "eval"), *self.options]
        done = subprocess.run(cmd, stdout=2)  # its progress and table go to stderr, where curation logs
        if done.returncode != 0:
            raise RuntimeError(f"pass@k grading failed: {shlex.join(cmd)} exited {done.returncode}")
        rates = solve_rates(work / "eval" / "samples.jsonl")
        missing = [r.id for r in records if r.id not in rates]
        if missing:
            raise RuntimeError(f"pass@k grading: {len(missing)} record(s) were not evaluated (prompt longer than "
                               f"--max-prompt-length?), e.g. {', '.join(missing[:5])}")
        return [rates[r.id] for r in records]


def solve_rates(samples_jsonl: str | Path) -> dict[str, float]:
    """Problem id -> pass@1 (the mean of its samples' accuracy) from an evaluation's ``samples.jsonl``."""
    by_problem: dict[str, list[float]] = defaultdict(list)
    with open(samples_jsonl, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            by_problem[row["problem_id"]].append(row["accuracy"])
    return {pid: sum(accuracies) / len(accuracies) for pid, accuracies in by_problem.items()}
