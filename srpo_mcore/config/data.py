"""Config sections for the data layer: what to train/evaluate on (``DataConfig``) and how to curate it
(``CurationConfig``)."""

from __future__ import annotations

from dataclasses import dataclass

from srpo_mcore.config.base import check, check_choice, check_positive, option
from srpo_mcore.data.files import file_kind
from srpo_mcore.data.filters import FILTERS
from srpo_mcore.data.formats import FORMATS
from srpo_mcore.data.records import DIFFICULTIES, DataError
from srpo_mcore.data.templates import get_template, template_names


def _check_files(paths: list[str], key: str) -> None:
    check(isinstance(paths, list | tuple), key, f"must be a list of file paths, got {type(paths).__name__}")
    for i, path in enumerate(paths):
        try:
            file_kind(path)
        except DataError:
            check(
                False,
                f"{key}[{i}]",
                f"{path!r}: use a .json, .jsonl, .ndjson (optionally .gz) or .parquet file",
            )


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
            _check_files(getattr(self, name), f"{prefix}.{name}")
        check_choice(self.file_format, ("auto", *FORMATS), f"{prefix}.file_format")
        check_choice(self.on_invalid_row, ("raise", "skip"), f"{prefix}.on_invalid_row")
        for domain in ("math", "code"):
            key, value = f"{prefix}.{domain}_template", getattr(self, f"{domain}_template")
            try:
                get_template(value, domain)
            except ValueError as err:
                check(False, key, f"{err} (registered: {', '.join(template_names(domain))})")


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
