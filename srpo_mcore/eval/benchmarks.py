"""What to evaluate on: named public benchmarks (files under the shared data directory) or any loadable file.

| name          | files (under the data directory)                                    | default k |
|---------------|---------------------------------------------------------------------|-----------|
| aime24        | math/aime24.json (30 problems)                                      | 32        |
| aime25        | math/aime25.jsonl (30)                                              | 32        |
| amc           | math/amc.json (83)                                                  | 1         |
| math500       | math/math500.json (500)                                             | 1         |
| livecodebench | code/livecodebench_sample.json + code/livecodebench_more.json (879) | 32        |
| humaneval     | code/HumanEval.jsonl.gz (164)                                       | 1         |

AIME and LiveCodeBench use the paper's protocol (pass@1 averaged over 32 samples); ``--k`` sets k for every
benchmark. Records load through :mod:`srpo_mcore.data.loaders` (format detected from the keys) and become prompts
through the trainer's :class:`~srpo_mcore.tasks.prompts.PromptTable` (same templates, same length limit).

Release-date window (``--since`` / ``--until``, inclusive, ``YYYY-MM-DD``): LiveCodeBench dates each problem
(``contest_date``, kept as ``meta["contest_date"]``); problems released before a model's data cut-off measure
memory, not skill. The window applies to ``livecodebench`` and to any benchmark whose records carry dates; every
record of such a benchmark must have one (the 879 problems under shared/data carry none: evaluating them with a
window fails and says so). Benchmarks without dates (AIME, MATH) are not filtered.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from srpo_mcore.data.loaders import load_many, source_name
from srpo_mcore.data.records import Record

BENCHMARKS: dict[str, tuple[tuple[str, ...], int]] = {
    "aime24": (("math/aime24.json",), 32),
    "aime25": (("math/aime25.jsonl",), 32),
    "amc": (("math/amc.json",), 1),
    "math500": (("math/math500.json",), 1),
    "livecodebench": (("code/livecodebench_sample.json", "code/livecodebench_more.json"), 32),
    "humaneval": (("code/HumanEval.jsonl.gz",), 1),
}


def default_data_dir() -> Path:
    """``shared/data`` beside the checkout, where CI lays out the public benchmark files."""
    return Path(__file__).resolve().parents[3] / "shared" / "data"


@dataclass(frozen=True)
class Benchmark:
    name: str
    files: tuple[Path, ...]
    k: int
    limit: int | None = None  # the first N problems only (after the date window)
    date_window: tuple[str | None, str | None] | None = None  # (since, until), inclusive ISO dates

    def window_applies(self, records: list[Record]) -> bool:
        """Whether the date window filters this benchmark: LiveCodeBench, or records that carry dates."""
        return self.date_window is not None and (
            self.name == "livecodebench" or any("contest_date" in r.meta for r in records))

    def load_records(self, file_format: str = "auto", on_invalid: str = "raise") -> list[Record]:
        """The benchmark's records (inside the date window, then the first ``limit``); raises ``DataError`` naming
        file, row and field, ``ValueError`` for undated records under a window or an empty window."""
        records = load_many(self.files, format=file_format, on_invalid=on_invalid)
        if self.window_applies(records):
            records = self._in_window(records)
        return records[:self.limit] if self.limit else records

    def _in_window(self, records: list[Record]) -> list[Record]:
        undated = [r.id for r in records if "contest_date" not in r.meta]
        if undated:
            raise ValueError(f"benchmark {self.name}: {len(undated)} of {len(records)} problems carry no contest_date "
                             f"(first: {undated[0]}), so --since/--until cannot select by release date; use "
                             "LiveCodeBench's release files, which date every problem, or drop the window")
        since, until = self.date_window or (None, None)
        kept = [r for r in records if (since is None or r.meta["contest_date"] >= since)
                and (until is None or r.meta["contest_date"] <= until)]
        if not kept:
            dates = sorted(r.meta["contest_date"] for r in records)
            raise ValueError(f"benchmark {self.name}: no problem released in [{since or '...'}, {until or '...'}] "
                             f"(its problems span {dates[0]} .. {dates[-1]})")
        return kept

    def prompts(self, cfg, tokenizer):
        """The records as a ``PromptTable`` (templates and ``rollout.max_prompt_length`` from ``cfg``)."""
        from srpo_mcore.tasks.prompts import PromptTable

        records = self.load_records(cfg.data.file_format, cfg.data.on_invalid_row)
        by_domain = {d: [r for r in records if r.domain == d] for d in ("math", "code")}
        try:
            return PromptTable.from_records(by_domain, cfg, tokenizer)
        except ValueError:
            raise ValueError(f"benchmark {self.name}: every prompt is longer than rollout.max_prompt_length="
                             f"{cfg.rollout.max_prompt_length} tokens (raise --max-prompt-length)") from None


def parse_date(value: str | None, flag: str) -> str | None:
    """``YYYY-MM-DD`` checked, or None."""
    if value is None:
        return None
    try:
        return datetime.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"{flag} {value!r}: expected a date YYYY-MM-DD") from None


def resolve(names: list[str], data_files: list[str], *, data_dir: Path | None, k: int | None,
            limit: int | None, since: str | None = None, until: str | None = None) -> list[Benchmark]:
    """Named benchmarks (files under ``data_dir``) then ``--data`` files (named after the file), with ``k``
    overriding each benchmark's default and the release-date window ``[since, until]``. Raises ``ValueError``
    for unknown names, missing files, k < 1, bad dates."""
    since, until = parse_date(since, "--since"), parse_date(until, "--until")
    if since and until and since > until:
        raise ValueError(f"--since {since} is after --until {until}")
    window = (since, until) if since or until else None
    if k is not None and k < 1:
        raise ValueError(f"--k must be >= 1, got {k}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if not names and not data_files:
        raise ValueError("nothing to evaluate: name benchmarks (--benchmark aime24 ...) or files (--data FILE)")
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)} "
                         "(or evaluate any file with --data FILE)")
    root = data_dir or default_data_dir()
    if names and not root.is_dir():
        raise ValueError(f"benchmark data directory {root} does not exist; pass --data-dir")
    out = [Benchmark(n, tuple(root / f for f in BENCHMARKS[n][0]), k or BENCHMARKS[n][1], limit, window)
           for n in names]
    taken = set(names)
    for path in data_files:
        name = source_name(path)
        while name in taken:
            name += "_"
        taken.add(name)
        out.append(Benchmark(name, (Path(path),), k or 1, limit, window))
    for bench in out:
        for file in bench.files:
            if not file.is_file():
                raise ValueError(f"benchmark {bench.name}: {file}: no such file")
    return out
