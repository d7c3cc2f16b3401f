"""Per-step bookkeeping of the curation pipeline and its JSON report."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepReport:
    """What one step did: records in/out, removals by reason (ids + evidence), modifications by kind."""

    name: str
    status: str = "done"  # "done" | "skipped" | "not checked"
    note: str = ""
    records_in: int = 0
    records_out: int = 0
    seconds: float = 0.0
    removed: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    modified: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)  # informational tallies (e.g. records per grade)

    def remove(self, reason: str, record_id: str, detail: str = "") -> None:
        self.removed[reason].append((record_id, detail))

    @property
    def removed_count(self) -> int:
        return sum(len(v) for v in self.removed.values())

    def to_dict(self, examples: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "in": self.records_in,
            "out": self.records_out,
            "removed": self.removed_count,
            "removed_by_reason": {
                reason: {
                    "count": len(items),
                    "examples": [{"id": i, "detail": d} if d else {"id": i} for i, d in items[:examples]],
                }
                for reason, items in sorted(self.removed.items())
            },
        }
        if self.note:
            out["note"] = self.note
        if self.modified:
            out["modified"] = dict(sorted(self.modified.items()))
        if self.counts:
            out["counts"] = dict(sorted(self.counts.items()))
        out["seconds"] = round(self.seconds, 3)
        return out


def summary_line(step: StepReport) -> str:
    """One progress/summary line: ``dedup: 120 -> 117 (3 removed: exact_duplicate 2, near_duplicate 1)``."""
    if step.status != "done":
        return f"{step.name}: {step.status}" + (f" ({step.note})" if step.note else "")
    reasons = ", ".join(f"{r} {len(v)}" for r, v in sorted(step.removed.items()))
    removed = f" ({step.removed_count} removed: {reasons})" if reasons else ""
    return f"{step.name}: {step.records_in} -> {step.records_out}{removed} in {step.seconds:.1f}s"
