"""What an evaluation leaves behind, in ``--out``:

* ``summary.json``: the checkpoint, the sampling settings (temperature, top-p, max tokens, seed, k per
  benchmark), and per benchmark: problems, k, the release-date window when one filtered it, pass@1 (mean over
  problems of correct samples / k), per-domain pass@1 for mixed files, mean response length (tokens),
  truncated and well-formatted fractions, prompts dropped for length; ``pending``: benchmarks not evaluated
  yet (both files are rewritten after every benchmark, so a crash keeps the finished ones);
* ``samples.jsonl``: one row per sample: benchmark, problem_id, domain, sample (0..k-1), response, reward,
  accuracy, status (the reward's verdict: ok, wrong_answer, no_answer, no_code, timeout, ...), format_ok,
  finish_reason, response_tokens. pass@1 can be recomputed from it alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from srpo_mcore.data.files import write_json, write_jsonl
from srpo_mcore.eval.benchmarks import Benchmark
from srpo_mcore.tasks.prompts import PromptTable


@dataclass
class BenchmarkResult:
    benchmark: Benchmark
    prompts: PromptTable
    metrics: dict[str, float]  # evaluate_pass_at_1's, without prefix
    groups: list[list]  # k ScoredSamples per problem
    seconds: float

    def summary(self) -> dict:
        samples = [s for g in self.groups for s in g]
        out = {
            "files": [str(f) for f in self.benchmark.files],
            "problems": len(self.groups),
            "k": self.benchmark.k,
            "pass@1": self.metrics["accuracy"],
            "response_length_mean": self.metrics["response_length_mean"],
            "truncated_fraction": sum(s.finish_reason == "length" for s in samples) / len(samples),
            "format_ok_fraction": sum(bool(s.format_ok) for s in samples) / len(samples),
            "dropped_too_long": sum(self.prompts.dropped_too_long.values()),
            "date_window": (dict(zip(("since", "until"), self.benchmark.date_window or (None, None)))
                            if self.benchmark.window_applies([p.record for p in self.prompts.prompts]) else None),
            "seconds": round(self.seconds, 2),
        }
        if len({s.domain for s in samples}) > 1:
            out.update({key: value for key, value in self.metrics.items() if key.endswith("_pass@1")})
        return out

    def sample_rows(self):
        for group in self.groups:
            for index, s in enumerate(group):
                yield {"benchmark": self.benchmark.name, "problem_id": s.prompt_id, "domain": s.domain,
                       "sample": index, "response": s.response_text, "reward": s.reward, "accuracy": s.accuracy,
                       "status": s.status, "format_ok": s.format_ok,
                       "finish_reason": s.finish_reason, "response_tokens": len(s.response_ids)}


def write(plan, results: list[BenchmarkResult], *, world_size: int, pending: Sequence[str] = ()) -> None:
    """Write (atomically) ``summary.json`` and ``samples.jsonl`` for the benchmarks done so far; ``pending`` names
    the ones not evaluated yet (empty once the evaluation finished)."""
    out = Path(plan.out)
    rollout, parallel = plan.cfg.rollout, plan.cfg.parallel
    summary = {
        "command": ["python", "-m", "srpo_mcore.eval", *plan.command],
        "checkpoint": {"kind": plan.checkpoint.kind, "path": str(plan.checkpoint.path), "tokenizer": plan.tokenizer,
                       "model": asdict(plan.checkpoint.model)},
        "config": plan.config_file,  # where the settings below came from (None: built-in defaults)
        "settings": {"temperature": rollout.temperature, "top_p": rollout.top_p,
                     "max_tokens": rollout.max_response_length, "max_prompt_length": rollout.max_prompt_length,
                     "seed": plan.seed, "k": {b.name: b.k for b in plan.benchmarks},
                     "dtype": plan.cfg.model.params_dtype,
                     "rollout_dtype": plan.cfg.model.params_dtype if rollout.dtype == "auto" else rollout.dtype,
                     "tp": parallel.tensor_model_parallel_size, "pp": parallel.pipeline_model_parallel_size,
                     "rollout_tp": rollout.tensor_parallel_size, "world_size": world_size,
                     "math_template": plan.cfg.data.math_template, "code_template": plan.cfg.data.code_template},
        "benchmarks": {r.benchmark.name: r.summary() for r in results},
        "pending": list(pending),
    }
    write_jsonl((row for r in results for row in r.sample_rows()), out / "samples.jsonl")
    write_json(summary, out / "summary.json")


def table(results: list[BenchmarkResult]) -> str:
    header = f"{'benchmark':<20} {'problems':>8} {'k':>4} {'pass@1':>8} {'mean len':>9}"
    lines = [header, "-" * len(header)]
    for r in results:
        s = r.summary()
        lines.append(f"{r.benchmark.name:<20} {s['problems']:>8} {s['k']:>4} {100 * s['pass@1']:>7.2f}% "
                     f"{s['response_length_mean']:>9.1f}")
    return "\n".join(lines)
