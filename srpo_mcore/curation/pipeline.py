"""The curation steps over in-memory records: clean -> filter -> dedup -> decontaminate -> answer_check
-> reference_check -> difficulty, each recording in a ``StepReport`` what it removed and why.

``load_step`` turns loader results into the ``load`` step's report. Engines this module does not own are
injected: ``verify_reference(record) -> bool | None`` (the code sandbox; ``None`` = nothing to check; a falsy
result's ``detail`` attribute, if any, goes into the report) and ``solve_rate(records, k) -> list[float]`` (the
vLLM engine + rewards). ``hooks.py`` implements both with the real components.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence

from srpo_mcore.curation.checks import (
    SolveRate,
    VerifyReference,
    checked_rates,
    code_tests_problem,
    grade,
    math_answer_problem,
)
from srpo_mcore.curation.config import CurationConfig
from srpo_mcore.curation.dedup import NearDupIndex
from srpo_mcore.curation.filters import first_failed
from srpo_mcore.curation.report import StepReport, summary_line
from srpo_mcore.data.loaders import LoadResult
from srpo_mcore.data.records import MathRecord, Record
from srpo_mcore.data.text import (
    find_control_char,
    normalize_whitespace,
    repair_escapes,
    strip_boilerplate,
    strip_markup,
    strip_urls,
)

Log = Callable[[str], None]


def log_stderr(message: str) -> None:
    print(f"[curate] {message}", file=sys.stderr, flush=True)


def load_step(results: Sequence[LoadResult]) -> tuple[list[Record], StepReport]:
    """Merge loaded files: rejected rows and repeated ids are the ``load`` step's removals."""
    step = StepReport("load", records_in=sum(r.rows for r in results))
    records, seen = [], set()
    for result in results:
        for err in result.errors:
            step.remove(
                f"invalid_{err.field or 'row'}".split("[")[0].replace(".", "_"),
                f"{result.path}:{err.row_label} {err.row}",
                err.message,
            )
        if result.repairs:
            step.modified["control_chars_repaired"] += len({r.row for r in result.repairs})
        for record in result.records:
            if record.id in seen:
                step.remove("duplicate_id", record.id, result.path)
                continue
            seen.add(record.id)
            records.append(record)
    step.records_out = len(records)
    return records, step


class Curator:
    """Runs the curation steps over in-memory records. Records are never mutated; cleaned or graded
    records are copies."""

    def __init__(
        self,
        config: CurationConfig | None = None,
        *,
        verify_reference: VerifyReference | None = None,
        solve_rate: SolveRate | None = None,
        eval_records: Sequence[Record] = (),
        log: Log = log_stderr,
        progress_every: int = 1000,
    ):
        self.config = config or CurationConfig()
        self.config.validate()
        self.verify_reference, self.solve_rate = verify_reference, solve_rate
        self.eval_records, self.log, self.progress_every = list(eval_records), log, progress_every

    def steps(self) -> list[tuple[str, Callable[[list[Record], StepReport], list[Record] | None]]]:
        return [
            ("clean", self.clean),
            ("filter", self.filter),
            ("dedup", self.dedup),
            ("decontaminate", self.decontaminate),
            ("answer_check", self.answer_check),
            ("reference_check", self.reference_check),
            ("difficulty", self.difficulty),
        ]

    def run(self, records: list[Record]) -> tuple[list[Record], list[StepReport]]:
        reports = []
        for name, step in self.steps():
            report = StepReport(name, records_in=len(records))
            start = time.perf_counter()
            result = step(records, report)
            if result is not None:  # None: the step was skipped and passes its input through
                records = result
            report.records_out, report.seconds = len(records), time.perf_counter() - start
            self.log(summary_line(report))
            reports.append(report)
        return records, reports

    def _each(self, records: list[Record], name: str) -> Iterable[Record]:
        """``records`` with a progress line every ``progress_every`` records."""
        for i, record in enumerate(records, start=1):
            yield record
            if i % self.progress_every == 0 and i < len(records):
                self.log(f"{name}: {i}/{len(records)}")

    # --- steps ---------------------------------------------------------------------------------------------

    def clean(self, records: list[Record], report: StepReport) -> list[Record] | None:
        if not self.config.clean:
            report.status, report.note = "skipped", "disabled (curation.clean=false)"
            return None
        kept = []
        for record in self._each(records, "clean"):
            text = record.problem
            for kind, fix in (
                ("control_chars_repaired", repair_escapes),
                ("urls_removed", strip_urls),
                ("markup_removed", strip_markup),
                ("boilerplate_removed", strip_boilerplate),
            ):
                text, count = fix(text)
                if count:
                    report.modified[kind] += 1
            normalized = normalize_whitespace(text, collapse_spaces=isinstance(record, MathRecord))
            if normalized != text.strip():
                report.modified["whitespace_normalised"] += 1
            offset = find_control_char(normalized)
            if not normalized:
                report.remove("empty_after_cleaning", record.id)
            elif offset is not None:
                report.remove("control_characters", record.id, f"U+{ord(normalized[offset]):04X} at {offset}")
            else:
                changes: dict = {"problem": normalized}
                if isinstance(record, MathRecord):
                    changes["answer"] = record.answer.strip()
                kept.append(dataclasses.replace(record, **changes))
        return kept

    def filter(self, records: list[Record], report: StepReport) -> list[Record] | None:
        if not self.config.filters:
            report.status, report.note = "skipped", "no filters enabled (curation.filters=[])"
            return None
        report.note = f"filters: {', '.join(self.config.filters)}"
        kept = []
        for record in self._each(records, "filter"):
            failed = first_failed(record, self.config.filters)
            if failed is None:
                kept.append(record)
            else:
                report.remove(failed[0], record.id, failed[1][:120])
        return kept

    def _index(self) -> NearDupIndex:
        cfg = self.config
        return NearDupIndex(cfg.near_dup_threshold, cfg.near_dup_ngram, cfg.near_dup_num_perm, cfg.seed)

    def _key(self, record: Record) -> str | None:
        """What near duplicates must agree on: the gold answer, or the tests."""
        if not self.config.near_dup_same_answer:
            return record.domain
        if isinstance(record, MathRecord):
            return "math:" + re.sub(r"\s+|\$", "", record.answer)
        tests = json.dumps([t.to_dict() for t in record.tests], sort_keys=True)
        return "code:" + hashlib.sha1(tests.encode()).hexdigest()

    def dedup(self, records: list[Record], report: StepReport) -> list[Record] | None:
        if not self.config.dedup:
            report.status, report.note = "skipped", "disabled (curation.dedup=false)"
            return None
        index, kept = self._index(), []
        for record in self._each(records, "dedup"):
            match = index.query(record.problem, self._key(record))
            if match is None:
                index.add(record.id, record.problem, self._key(record))
                kept.append(record)
            elif match.exact:
                report.remove("exact_duplicate", record.id, f"of {match.id}")
            else:
                report.remove("near_duplicate", record.id, f"of {match.id} (jaccard {match.similarity})")
        return kept

    def decontaminate(self, records: list[Record], report: StepReport) -> list[Record] | None:
        if not self.eval_records:
            report.status, report.note = "skipped", "no eval files given (--eval)"
            return None
        index = self._index()
        for record in self.eval_records:
            index.add(record.id, record.problem, self._key(record))
        report.note = f"against {len(self.eval_records)} eval problems"
        kept = []
        for record in self._each(records, "decontaminate"):
            match = index.query(record.problem, self._key(record))
            if match is None:
                kept.append(record)
            else:
                report.remove("eval_overlap", record.id, f"matches {match.id} (jaccard {match.similarity})")
        return kept

    def answer_check(self, records: list[Record], report: StepReport) -> list[Record] | None:
        if not self.config.check_answers:
            report.status, report.note = "skipped", "disabled (curation.check_answers=false)"
            return None
        kept = []
        for record in self._each(records, "answer_check"):
            if isinstance(record, MathRecord):
                reason, problem = "unparseable_answer", math_answer_problem(record)
            else:
                reason, problem = "malformed_tests", code_tests_problem(record)
            if problem is None:
                kept.append(record)
            else:
                report.remove(reason, record.id, problem)
        return kept

    def reference_check(self, records: list[Record], report: StepReport) -> list[Record] | None:
        if self.verify_reference is None:
            report.status = "not checked"
            report.note = "no verify_reference hook given (needs the code sandbox); references were not run"
            return None
        kept = []
        for record in self._each(records, "reference_check"):
            try:
                passed = self.verify_reference(record)
            except Exception as err:  # a hook failure is this record's problem, not the run's
                report.remove("reference_error", record.id, f"{type(err).__name__}: {err}"[:200])
                continue
            if passed is None:
                report.counts["no_reference"] += 1
            elif not passed:
                report.remove("reference_fails", record.id, getattr(passed, "detail", ""))
                continue
            else:
                report.counts["reference_passes"] += 1
            kept.append(record)
        return kept

    def difficulty(self, records: list[Record], report: StepReport) -> list[Record] | None:
        cfg = self.config
        if self.solve_rate is None:
            report.status = "skipped"
            report.note = "no solve_rate engine given; records stay ungraded (difficulty=null)"
            return None
        report.note = (
            f"pass@{cfg.pass_k}: easy if solve rate >= {cfg.easy_solve_rate}, hard if < {cfg.hard_solve_rate}"
        )
        rates = checked_rates(self.solve_rate(records, cfg.pass_k), len(records))
        kept = []
        for record, rate in zip(records, rates):
            label = grade(rate, easy_at=cfg.easy_solve_rate, hard_below=cfg.hard_solve_rate)
            report.counts[label] += 1
            if label in cfg.drop_difficulties:
                report.remove(f"graded_{label}", record.id, f"solve rate {rate:.3f}")
            else:
                kept.append(dataclasses.replace(record, difficulty=label, solve_rate=rate))
        return kept
