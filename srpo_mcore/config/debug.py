"""The ``debug:`` section: crash-test hooks and console switches, typed and validated like every other section
(rather than environment variables read deep inside the code)."""

from __future__ import annotations

from dataclasses import dataclass

from srpo_mcore.config.base import check, option


@dataclass
class DebugConfig:
    kill_rank0_at_step: int = option(
        0, "Crash test: rank 0 SIGKILLs itself in the middle of this training step (after its rollouts, before the "
           "update), like a node loss; the resume tests use it. 0: never.")
    skip_weight_sync_at_step: int = option(
        0, "Stale-push test: skip the trainer -> vLLM weight sync at the end of this training step, so the next "
           "step samples from the previous weights; the stale-weight guard must catch it. 0: never.")
    kill_rank0_after_benchmark: int = option(
        -1, "Crash test of evaluation: rank 0 SIGKILLs itself once benchmark N (0-based) is written to the "
            "summary. -1: never.")
    profile_steps: list[int] = option(
        factory=list, help="Run these training steps under cProfile on every rank and write run_dir/profile/"
        "step{N}-rank{R}.pstats and .txt (functions by cumulative time); benchmarks/step_profile.py sums them. "
        "Empty: none.")
    library_output_on_console: bool = option(
        False, "Also show third-party libraries' log records and Python warnings (Megatron-Core, vLLM, "
               "transformers) on rank 0's console; by default they go to the per-rank log files only.")

    def validate(self, prefix: str = "debug") -> None:
        check(self.kill_rank0_at_step >= 0, f"{prefix}.kill_rank0_at_step",
              f"must be >= 0 (0: never), got {self.kill_rank0_at_step}")
        check(self.skip_weight_sync_at_step >= 0, f"{prefix}.skip_weight_sync_at_step",
              f"must be >= 0 (0: never), got {self.skip_weight_sync_at_step}")
        check(all(step >= 1 for step in self.profile_steps), f"{prefix}.profile_steps",
              f"training steps count from 1, got {self.profile_steps}")
        check(self.kill_rank0_after_benchmark >= -1, f"{prefix}.kill_rank0_after_benchmark",
              f"must be >= -1 (-1: never), got {self.kill_rank0_after_benchmark}")
