"""Curate a dataset: ``python -m srpo_mcore.curation.curate --input FILE [FILE ...] --output OUT.jsonl
--report REPORT.json [--eval EVAL_FILE ...] [--skip-filter NAME] [--near-dup-threshold 0.9] ...``

Loads the inputs (malformed rows become the ``load`` step's removals), runs the ``pipeline.Curator`` steps
and writes the curated records (JSONL of ``record.to_dict()``) and a JSON report with every step's
removals by reason and a few example ids, each file atomically (a crash leaves earlier files untouched).
Progress goes to stderr. The reference-solution check and pass@k grading need engines: name them as
``--verify-reference module:function`` / ``--solve-rate module:function``; without them the report says
"not checked" / "skipped". The real ones (``srpo_mcore/curation/hooks.py``):

    --verify-reference srpo_mcore.curation.hooks:verify_reference  references through the code sandbox
    --grade-with-model HF_DIR [--grade-options "--tp 2 ..."]    pass@k with vLLM + rewards (a torchrun job)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import sys
from collections import Counter
from collections.abc import Callable, Sequence

from srpo_mcore.config.base import ConfigError
from srpo_mcore.curation.config import CurationConfig
from srpo_mcore.curation.filters import FILTERS
from srpo_mcore.curation.pipeline import Curator, Log, load_step, log_stderr
from srpo_mcore.curation.report import StepReport, summary_line
from srpo_mcore.data.files import write_json, write_jsonl
from srpo_mcore.data.formats import FORMATS
from srpo_mcore.data.loaders import LoadResult, load_file
from srpo_mcore.data.records import DataError, Record

__all__ = ["Curator", "build_report", "main"]


# --- command line ------------------------------------------------------------------------------------------


def build_report(
    results: Sequence[LoadResult],
    steps: list[StepReport],
    records: list[Record],
    config: CurationConfig,
    output: str,
) -> dict:
    examples = config.examples_per_reason
    return {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "inputs": [
            {
                "path": r.path,
                "format": r.format,
                "rows": r.rows,
                "records": len(r.records),
                "rejected": len(r.errors),
            }
            for r in results
        ],
        "config": dataclasses.asdict(config),
        "steps": [s.to_dict(examples) for s in steps],
        "removed_total": sum(s.removed_count for s in steps),
        "output": {
            "path": output,
            "records": len(records),
            "by_domain": dict(Counter(r.domain for r in records)),
            "by_source": dict(Counter(r.source for r in records)),
            "by_difficulty": dict(Counter(str(r.difficulty) for r in records)),
        },
    }


def _hook(spec: str | None) -> Callable | None:
    """``"package.module:function"`` -> the callable."""
    if spec is None:
        return None
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"hook {spec!r}: expected 'module:function'")
    return getattr(importlib.import_module(module), name)


def _solve_rate(args: argparse.Namespace) -> Callable | None:
    if args.grade_with_model is None:
        return _hook(args.solve_rate)
    from srpo_mcore.curation.hooks import ModelGrader

    return ModelGrader(args.grade_with_model, args.grade_options, args.grade_dir)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = CurationConfig()
    p = argparse.ArgumentParser(
        prog="python -m srpo_mcore.curation.curate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--input", nargs="+", required=True, help="data files (JSON, JSONL, .gz, Parquet)")
    p.add_argument("--output", required=True, help="curated records, JSONL")
    p.add_argument("--report", required=True, help="JSON report of every step's removals")
    p.add_argument("--format", default="auto", choices=["auto", *FORMATS], help="row layout of the inputs")
    p.add_argument("--eval", nargs="*", default=[], help="eval files to decontaminate against")
    p.add_argument("--no-clean", action="store_true")
    p.add_argument("--skip-filter", action="append", default=[], choices=list(FILTERS))
    p.add_argument("--no-dedup", action="store_true")
    p.add_argument("--near-dup-threshold", type=float, default=defaults.near_dup_threshold)
    p.add_argument("--no-answer-check", action="store_true")
    p.add_argument("--pass-k", type=int, default=defaults.pass_k)
    p.add_argument("--drop-difficulty", action="append", default=[], choices=["easy", "medium", "hard"])
    p.add_argument("--verify-reference", metavar="MODULE:FN", help="reference-solution hook")
    grading = p.add_mutually_exclusive_group()
    grading.add_argument("--solve-rate", metavar="MODULE:FN", help="pass@k engine hook for difficulty grading")
    grading.add_argument("--grade-with-model", metavar="HF_DIR",
                         help="grade difficulty by pass@k of this model (python -m srpo_mcore.eval under torchrun)")
    p.add_argument("--grade-options", default="", metavar="OPTIONS",
                   help='options for python -m srpo_mcore.eval when grading, e.g. "--tp 2 --max-tokens 4096"')
    p.add_argument("--grade-dir", metavar="DIR", help="keep the grading evaluation's files here")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log: Log = (lambda _m: None) if args.quiet else log_stderr
    config = CurationConfig(
        clean=not args.no_clean,
        filters=[f for f in FILTERS if f not in args.skip_filter],
        dedup=not args.no_dedup,
        near_dup_threshold=args.near_dup_threshold,
        check_answers=not args.no_answer_check,
        pass_k=args.pass_k,
        drop_difficulties=args.drop_difficulty,
    )
    try:
        results = [load_file(p, args.format, on_invalid="skip") for p in args.input]
        eval_records = [r for p in args.eval for r in load_file(p, on_invalid="skip").records]
        curator = Curator(
            config,
            verify_reference=_hook(args.verify_reference),
            solve_rate=_solve_rate(args),
            eval_records=eval_records,
            log=log,
        )
    except (DataError, ConfigError, ValueError, ImportError, AttributeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    records, load_report = load_step(results)
    log(summary_line(load_report))
    records, reports = curator.run(records)
    write_jsonl((r.to_dict() for r in records), args.output)
    report = build_report(results, [load_report, *reports], records, config, args.output)
    write_json(report, args.report)
    log(f"wrote {len(records)} records to {args.output}; report {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
