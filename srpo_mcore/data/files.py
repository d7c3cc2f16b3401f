"""Reading raw rows from JSON / JSONL (optionally gzipped) / Parquet, and atomic JSON(L) writing.

``read_rows`` yields ``(row_number, row_or_error)``: a line of JSONL that is not valid JSON comes back as a
``DataError`` so that the caller can reject or skip that row; problems with the whole file raise.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from srpo_mcore.data.records import DataError

SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet")  # .json/.jsonl/.ndjson may also end in .gz


def file_kind(path: str | Path) -> str:
    """``"json"``, ``"jsonl"`` or ``"parquet"`` from the file name."""
    name = str(path).lower().removesuffix(".gz")
    for suffix, kind in (
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "json"),
        (".parquet", "parquet"),
    ):
        if name.endswith(suffix):
            if kind == "parquet" and str(path).lower().endswith(".gz"):
                break
            return kind
    raise DataError(
        "unsupported file type: expected .json, .jsonl or .ndjson (optionally .gz), or .parquet",
        path=str(path),
    )


def row_label(path: str | Path) -> str:
    """How rows of this file are counted in messages: ``"line"`` for JSONL, ``"row"`` otherwise."""
    return "line" if file_kind(path) == "jsonl" else "row"


def _open_text(path: Path) -> TextIO:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(1-based row, parsed row or DataError)`` for every row of ``path``."""
    path = Path(path)
    kind = file_kind(path)
    if not path.is_file():
        raise DataError("no such file", path=str(path))
    try:
        if kind == "jsonl":
            yield from _read_jsonl(path)
        elif kind == "json":
            yield from enumerate(_read_json_list(path), start=1)
        else:
            yield from enumerate(_read_parquet(path), start=1)
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise DataError(f"cannot read: {err}", path=str(path)) from None


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as err:
                yield (
                    number,
                    DataError(
                        f"invalid JSON: {err.msg} (column {err.colno})",
                        path=str(path),
                        row=number,
                        row_label="line",
                    ),
                )


def _read_json_list(path: Path) -> list[Any]:
    with _open_text(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise DataError(
                f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}", path=str(path)
            ) from None
    if not isinstance(data, list):
        raise DataError(
            f"expected a JSON list of objects at the top level, got {type(data).__name__} "
            "(one object per line? name the file .jsonl)",
            path=str(path),
        )
    return data


def _read_parquet(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            "reading Parquet needs the 'pyarrow' package, which is not installed in this "
            "environment; install pyarrow or convert the file to JSONL",
            path=str(path),
        ) from None
    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises its own ArrowInvalid/ArrowIOError family
        raise DataError(f"cannot read Parquet: {err}", path=str(path)) from None


# --- writing -------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[TextIO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(rows: Iterable[dict], path: str | Path) -> int:
    """Write one JSON object per line, atomically; returns the number of rows."""
    count = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_json(obj: Any, path: str | Path) -> None:
    """Write an indented JSON document, atomically."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
