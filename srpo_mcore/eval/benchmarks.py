"""What to evaluate on: named public benchmarks (files under the shared data directory) or any loadable file.

| name          | files (under the data directory)                                    | default k |
|---------------|---------------------------------------------------------------------|-----------|
| aime24        | math/aime24.json (30 problems)                                      | 32        |
| aime25        | math/aime25.jsonl (30)                                              | 32        |
| amc           | math/amc.json (83)                                                  | 1         |
| math500       | math/math500.json (500)                                             | 1         |
| livecodebench | code/livecodebench_sample.json + code/livecodebench_more.json (879) | 1         |
| humaneval     | code/HumanEval.jsonl.gz (164)                                       | 1         |

AIME uses the paper's protocol (pass@1 averaged over 32 samples); ``--k`` sets k for every benchmark. Records
load through :mod:`srpo_mcore.data.loaders` (format detected from the keys) and become prompts through the
trainer's :class:`~srpo_mcore.tasks.prompts.PromptTable` (same templates, same length limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srpo_mcore.data.loaders import load_many, source_name
from srpo_mcore.data.records import Record

BENCHMARKS: dict[str, tuple[tuple[str, ...], int]] = {
    "aime24": (("math/aime24.json",), 32),
    "aime25": (("math/aime25.jsonl",), 32),
    "amc": (("math/amc.json",), 1),
    "math500": (("math/math500.json",), 1),
    "livecodebench": (("code/livecodebench_sample.json", "code/livecodebench_more.json"), 1),
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
    limit: int | None = None  # the first N problems only

    def load_records(self, file_format: str = "auto", on_invalid: str = "raise") -> list[Record]:
        """The benchmark's records (the first ``limit``); raises ``DataError`` naming file, row and field."""
        records = load_many(self.files, format=file_format, on_invalid=on_invalid)
        return records[:self.limit] if self.limit else records

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


def resolve(names: list[str], data_files: list[str], *, data_dir: Path | None, k: int | None,
            limit: int | None) -> list[Benchmark]:
    """Named benchmarks (files under ``data_dir``) then ``--data`` files (named after the file), with ``k``
    overriding each benchmark's default. Raises ``ValueError`` for unknown names, missing files, k < 1."""
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
    out = [Benchmark(n, tuple(root / f for f in BENCHMARKS[n][0]), k or BENCHMARKS[n][1], limit) for n in names]
    taken = set(names)
    for path in data_files:
        name = source_name(path)
        while name in taken:
            name += "_"
        taken.add(name)
        out.append(Benchmark(name, (Path(path),), k or 1, limit))
    for bench in out:
        for path in bench.files:
            if not path.is_file():
                raise ValueError(f"benchmark {bench.name}: {path}: no such file")
    return out
