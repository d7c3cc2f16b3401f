"""Fixtures for the data-layer tests: the shared public samples (skipped when absent) and file writers."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows) -> Path:
    """``rows`` may hold raw strings, written verbatim as lines (for malformed-JSON cases)."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
