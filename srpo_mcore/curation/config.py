"""``CurationConfig``: how ``python -m srpo_mcore.curation.curate`` curates a dataset (its flags fill it in).

It lives beside the curation code (the filter names it checks are the curation's), not in ``srpo_mcore/config/``:
a training run does not read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from srpo_mcore.config.base import check, check_choice, check_positive, option
from srpo_mcore.curation.filters import FILTERS
from srpo_mcore.data.records import DIFFICULTIES


@dataclass
class CurationConfig:
    clean: bool = option(True, help="strip URLs, HTML and source boilerplate; normalise whitespace")
    filters: list[str] = option(
        factory=lambda: list(FILTERS), help=f"rule filters to apply: {', '.join(FILTERS)}"
    )
    dedup: bool = option(True, help="drop exact and near-duplicate problems (the first occurrence is kept)")
    near_dup_threshold: float = option(
        0.85, help="character n-gram Jaccard at or above which problems are near duplicates"
    )
    near_dup_ngram: int = option(5, help="character n-gram length for near-duplicate detection")
    near_dup_num_perm: int = option(
        128, help="MinHash permutations (LSH candidates; pairs are confirmed exactly)"
    )
    near_dup_same_answer: bool = option(
        True, help="near (not exact) duplicates must share the gold answer/tests"
    )
    check_answers: bool = option(
        True, help="drop math golds that math-verify cannot parse and unrunnable code tests"
    )
    pass_k: int = option(8, help="samples per problem for pass@k difficulty grading")
    easy_solve_rate: float = option(0.8, help="solve rate at or above which a problem is graded easy")
    hard_solve_rate: float = option(0.2, help="solve rate below which a problem is graded hard")
    drop_difficulties: list[str] = option(factory=list, help="grades to drop after grading, e.g. ['easy']")
    examples_per_reason: int = option(5, help="example ids listed per removal reason in the report")
    seed: int = option(0, help="seed of the MinHash permutations")

    def validate(self, prefix: str = "curation") -> None:
        for i, name in enumerate(self.filters):
            check_choice(name, tuple(FILTERS), f"{prefix}.filters[{i}]")
        check(
            0.0 < self.near_dup_threshold <= 1.0,
            f"{prefix}.near_dup_threshold",
            f"must lie in (0, 1], got {self.near_dup_threshold}",
        )
        check_positive(self.near_dup_ngram, f"{prefix}.near_dup_ngram")
        check_positive(self.near_dup_num_perm, f"{prefix}.near_dup_num_perm")
        check_positive(self.pass_k, f"{prefix}.pass_k")
        check(
            0.0 <= self.hard_solve_rate <= self.easy_solve_rate <= 1.0,
            f"{prefix}.easy_solve_rate",
            f"need 0 <= hard_solve_rate ({self.hard_solve_rate}) <= easy_solve_rate ({self.easy_solve_rate}) <= 1",
        )
        for i, grade in enumerate(self.drop_difficulties):
            check_choice(grade, DIFFICULTIES, f"{prefix}.drop_difficulties[{i}]")
        check_positive(self.examples_per_reason, f"{prefix}.examples_per_reason", allow_zero=True)
