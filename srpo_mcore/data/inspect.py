"""Summarise a data file: ``python -m srpo_mcore.data.inspect FILE [--format NAME] [--strict]``.

Prints the detected format, row/record counts by domain and source, rejected rows, control-character
repairs and the first record as JSON. Exits 1 when any row is rejected.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from srpo_mcore.data.formats import FORMATS
from srpo_mcore.data.loaders import load_file
from srpo_mcore.data.records import CodeRecord, DataError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m srpo_mcore.data.inspect", description=__doc__)
    parser.add_argument("file")
    parser.add_argument("--format", default="auto", choices=["auto", *FORMATS])
    parser.add_argument("--strict", action="store_true", help="stop at the first bad row")
    parser.add_argument("--show-errors", type=int, default=10, help="rejected rows to list (default 10)")
    args = parser.parse_args(argv)
    try:
        result = load_file(args.file, args.format, on_invalid="raise" if args.strict else "skip")
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    records = result.records
    print(f"file: {result.path}\nformat: {result.format}\nrows: {result.rows}\nrecords: {len(records)}")
    print(f"by domain: {dict(Counter(r.domain for r in records))}")
    print(f"by source: {dict(Counter(r.source for r in records))}")
    tests = Counter(t.kind for r in records if isinstance(r, CodeRecord) for t in r.tests)
    if tests:
        print(f"code tests by kind: {dict(tests)}")
    if result.repairs:
        listed = ", ".join(f"row {r.row} {r.field} x{r.count}" for r in result.repairs)
        print(f"repaired control characters: {listed}")
    print(f"rejected rows: {len(result.errors)}")
    for rejected in result.errors[: args.show_errors]:
        print(f"  {rejected}")
    if records:
        print("first record:")
        print(json.dumps(records[0].to_dict(), indent=2, ensure_ascii=False))
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
