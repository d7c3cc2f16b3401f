"""Validated loading of math/code records from JSON, JSONL (optionally .gz) and Parquet files.

    records = load_records("../shared/data/math/aime24.json")            # format detected from the keys
    result = load_file("train.jsonl", "record", on_invalid="skip")       # keep going; result.errors lists
                                                                         # each rejected row

Every rejected row raises (or, with ``on_invalid="skip"``, collects) a ``DataError`` whose message names
the file, the 1-based row (``line N`` for JSONL, ``row N`` for JSON lists and Parquet) and the field.

Control characters: escape-corrupted LaTeX commands (``\\x0crac`` for ``\\frac``, TAB+``riangle`` for
``\\triangle``, as in aime25 rows 19, 20 and 28 counted from 1) are repaired and listed in
``LoadResult.repairs``; any other control character in ``problem`` or ``answer`` rejects the row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from srpo_mcore.data.files import read_rows, row_label
from srpo_mcore.data.formats import FORMATS, detect_format
from srpo_mcore.data.records import DataError, MathRecord, Record
from srpo_mcore.data.text import find_control_char, repair_escapes

OnInvalid = Literal["raise", "skip"]
_log = logging.getLogger(__name__)
_DETECT_SAMPLE = 50


@dataclass
class Repair:
    """Control-character repairs applied to one field of one row."""

    row: int
    field: str
    count: int


@dataclass
class LoadResult:
    path: str
    format: str
    rows: int = 0  # rows read, valid or not
    records: list[Record] = field(default_factory=list)
    errors: list[DataError] = field(default_factory=list)  # rejected rows (on_invalid="skip")
    repairs: list[Repair] = field(default_factory=list)


def source_name(path: str | Path) -> str:
    """Default ``source`` for a file: its name without data suffixes (``aime24``, ``HumanEval``)."""
    name = Path(path).name
    for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".parquet"):
        name = name.removesuffix(suffix)
    return name


def load_file(
    path: str | Path,
    format: str = "auto",  # noqa: A002
    *,
    source: str | None = None,
    on_invalid: OnInvalid = "raise",
    domain: str | None = None,
    repair: bool = True,
) -> LoadResult:
    """Load and validate every row of ``path``.

    ``format``: a name from ``FORMATS`` or ``"auto"`` (majority of the first rows' key signatures).
    ``source``: tag for the records (default: the file name without suffixes; ``record`` rows keep theirs).
    ``domain``: ``"math"``/``"code"`` to reject rows of the other domain. ``repair``: fix escape-corrupted
    LaTeX (else such rows are rejected).
    """
    path_str, label = str(path), row_label(path)
    rows = list(read_rows(path))
    fmt = _resolve_format(format, [r for _, r in rows[:_DETECT_SAMPLE]], path_str)
    convert, source = FORMATS[fmt], source or source_name(path)
    result = LoadResult(path=path_str, format=fmt, rows=len(rows))
    for number, row in rows:
        try:
            if isinstance(row, DataError):
                raise row
            if not isinstance(row, dict):
                raise DataError(f"expected a JSON object, got {type(row).__name__}")
            record = convert(row, source, number)
            _check_domain(record, domain)
            result.repairs += _check_text(record, number, repair)
        except DataError as err:
            located = err.at(path=path_str, row=number, row_label=label)
            if on_invalid == "raise":
                raise located from None
            result.errors.append(located)
            continue
        result.records.append(record)
    return result


def load_records(path: str | Path, format: str = "auto", **kwargs) -> list[Record]:  # noqa: A002
    """The records of one file; raises ``DataError`` on the first bad row (see ``load_file``)."""
    return load_file(path, format, **kwargs).records


def load_many(
    paths: Iterable[str | Path],
    format: str = "auto",  # noqa: A002
    **kwargs,
) -> list[Record]:
    """Records of several files, in order; ids must be unique across them. With ``on_invalid="skip"`` each
    rejected row is logged as a warning."""
    records: list[Record] = []
    seen: dict[str, str] = {}
    for path in paths:
        result = load_file(path, format, **kwargs)
        for err in result.errors:
            _log.warning("skipped %s", err)
        for record in result.records:
            if record.id in seen:
                raise DataError(
                    f"duplicate id {record.id!r} (first in {seen[record.id]})", path=str(path), field="id"
                )
            seen[record.id] = str(path)
            records.append(record)
    return records


def _resolve_format(format: str, sample: list, path: str) -> str:  # noqa: A002
    if format != "auto":
        if format not in FORMATS:
            raise DataError(
                f"unknown format {format!r}; choose 'auto' or one of {', '.join(FORMATS)}", path=path
            )
        return format
    detected = detect_format(sample)
    if detected is None:
        raise DataError(
            f"cannot detect the format from the first rows' keys; pass a format, one of {', '.join(FORMATS)}",
            path=path,
        )
    return detected


def _check_domain(record: Record, domain: str | None) -> None:
    if domain is not None and record.domain != domain:
        raise DataError(f"a {record.domain} record where {domain} records are expected", field="domain")


def _check_text(record: Record, row: int, repair: bool) -> list[Repair]:
    """Repair escape-corrupted LaTeX in problem/answer; reject any other control character."""
    repairs = []
    names = ("problem", "answer") if isinstance(record, MathRecord) else ("problem",)
    for name in names:
        text = getattr(record, name)
        if repair:
            text, count = repair_escapes(text)
            if count:
                setattr(record, name, text)
                repairs.append(Repair(row, name, count))
        offset = find_control_char(text)
        if offset is not None:
            raise DataError(
                f"control character U+{ord(text[offset]):04X} at offset {offset} "
                f"(near {text[max(0, offset - 15) : offset + 15]!r}); fix the source row",
                field=name,
            )
    return repairs
