"""Reward section: rule-based math/code rewards, the format reward, the language penalty and the code sandbox.

Total reward of one response (see ``srpo_mcore/rewards/manager.py``)::

    reward = accuracy_weight * accuracy                      # 1 if the answer / all tests are right
           - format_weight * (0 if format_ok else 1)         # the format the prompt template asks for
           - language_penalty_weight * language_penalty      # 0..1: prose in another script than the prompt's

so a right, well-formed, single-language response scores exactly ``accuracy_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass

from srpo_mcore.config.base import check, check_choice, check_positive, option

MATH_FORMATS = ("think_boxed", "boxed", "none")
CODE_FORMATS = ("think_code", "code_block", "none")
SANDBOX_BACKENDS = ("auto", "bwrap", "rlimits")


@dataclass
class RewardConfig:
    """How responses are scored; every limit is per test (code) or per verification (math)."""

    # -- composition -------------------------------------------------------------------------------------
    accuracy_weight: float = option(1.0, "Reward for a right answer (math) or for passing every test (code).")
    format_weight: float = option(
        0.1, "Subtracted when the response does not follow the format the template asks for (0 disables).")
    language_penalty_weight: float = option(
        0.1, "Weight of the graded language penalty (0..1, see language_penalty_threshold): SRPO penalises "
        "mixed-language output; the paper gives no value; 0 disables.")
    math_format: str = option(
        "think_boxed", "Math format: think_boxed (R1-Zero: reasoning, one </think>, then an answer with "
        "\\boxed{}), boxed (a \\boxed{} answer) or none.")
    code_format: str = option(
        "think_code", "Code format: think_code (reasoning, one </think>, then a ```python block), code_block "
        "(a ```python block) or none.")
    require_think_close: bool = option(
        False, "Take answers and code only after </think>: a response without it scores 0. Set it with templates "
        "that open <think> in the prompt (r1_zero_*; the paper recipe does), so a response that never closes its "
        "reasoning, a truncated one included, cannot score. A response with <think> but no </think> never has an "
        "answer either way.")
    language_penalty_threshold: float = option(
        0.1, "Share of the response's prose in another script than the prompt's that is tolerated (English "
        "technical terms in a Chinese answer); above it the penalty rises linearly to 1 when all prose is foreign. "
        "Prose is counted in letter-equivalents (a letter; 2.5 per CJK character); code, math, identifiers and "
        "one-letter words are not prose (srpo_mcore/rewards/format.py).")
    language_min_units: int = option(
        20, "Responses with fewer prose letter-equivalents (~4 English words, 8 CJK characters) are never penalised.")

    # -- math ----------------------------------------------------------------------------------------------
    math_workers: int = option(2, "Processes verifying math answers with math-verify.")
    math_timeout_seconds: float = option(
        5.0, "Outer deadline per verification: a worker still busy after it is killed and replaced (score 0).")
    math_memory_mb: int = option(2048, "Address-space cap (RLIMIT_AS) of each math worker.")
    math_max_answer_chars: int = option(
        1000, "Extracted answers longer than this score 0 without a verification (0: no limit).")
    math_cache_size: int = option(
        100_000, "Verdicts kept per (gold, answer) pair: a group's repeated answers are verified once (0: off).")

    # -- code ----------------------------------------------------------------------------------------------
    code_workers: int = option(2, "Sandbox launches running at once (one launch runs all tests of a response).")
    code_cache_size: int = option(
        10_000, "Verdicts kept per (program, tests): a group's identical programs run once, copies arriving at "
        "once wait for the first launch; timeouts, limit hits and sandbox errors are not kept "
        "(srpo_mcore/rewards/code_cache.py; 0: off, every copy runs).")
    code_float_tolerance: float = option(
        1e-6, "Relative/absolute tolerance when an expected output token or value is a float (0: exact).")
    code_stop_after_timeout: bool = option(
        True, "After a test times out, the response's remaining tests are not run (they count as failed).")
    sandbox_backend: str = option(
        "auto", "auto (bubblewrap when user namespaces work, else the rlimits fallback, logged as an error), "
        "bwrap (fail if unavailable) or rlimits (no namespaces: for machines without bubblewrap only).")
    sandbox_cpu_seconds: float = option(4.0, "CPU seconds per test (a record's time_limit overrides it).")
    sandbox_wall_seconds: float = option(
        10.0, "Wall-clock seconds per test: a safety net for sleeping programs; limits are judged by CPU time.")
    sandbox_wall_stretch: float = option(
        3.0, "A test still computing at its wall limit (a loaded machine) may run up to this many times longer; "
        "its CPU limit still holds. Sleeping programs are stopped at the limit.")
    sandbox_total_wall_seconds: float = option(
        60.0, "Wall-clock seconds for all tests of one response; tests not started by then fail.")
    sandbox_memory_mb: int = option(1024, "Address-space limit (RLIMIT_AS) of each test process, in MiB.")
    sandbox_output_bytes: int = option(
        1 << 20, "Cap on a test's stdout (and stderr): past it the program is killed (output_limit).")
    sandbox_max_processes: int = option(32, "RLIMIT_NPROC inside the sandbox (processes and threads).")
    sandbox_file_size_mb: int = option(16, "RLIMIT_FSIZE: largest file a program may write, in MiB.")
    sandbox_tmpfs_mb: int = option(64, "Size of the sandbox's private /tmp (its work dir) and /dev/shm, in MiB.")
    sandbox_reuse_launches: int = option(
        64, "Launches one warm sandbox serves before it is replaced (between launches all its processes are "
        "killed and its tmpfs emptied); 1: a fresh bubblewrap per launch (~5-40 ms more each).")
    sandbox_uid: int = option(65534, "Unprivileged uid that runs the sandbox when the trainer runs as root.")
    sandbox_fallback_uid_base: int = option(
        1_900_000_000, "rlimits fallback as root: each running launch holds its own uid in [base, base+256) "
        "(across processes too), so per-uid limits and clean-up never touch another launch. Pick a range no "
        "real user or container maps.")
    sandbox_python: str = option(
        "", "Interpreter for sandboxed programs (standard library only); empty: this interpreter if the "
        "sandbox uid can read it, else the system python3.")

    def validate(self, prefix: str = "rewards") -> None:
        for name in ("accuracy_weight", "format_weight", "language_penalty_weight"):
            check_positive(getattr(self, name), f"{prefix}.{name}", allow_zero=True)
        check(self.accuracy_weight > 0, f"{prefix}.accuracy_weight", "must be > 0: it is the reward signal")
        check_choice(self.math_format, MATH_FORMATS, f"{prefix}.math_format")
        check_choice(self.code_format, CODE_FORMATS, f"{prefix}.code_format")
        check(0.0 <= self.language_penalty_threshold < 1.0, f"{prefix}.language_penalty_threshold",
              f"must be in [0, 1), got {self.language_penalty_threshold}")
        check_positive(self.language_min_units, f"{prefix}.language_min_units", allow_zero=True)
        check_positive(self.math_workers, f"{prefix}.math_workers")
        check(self.math_timeout_seconds >= 1.0, f"{prefix}.math_timeout_seconds",
              f"must be >= 1 (math-verify's own timeouts are whole seconds), got {self.math_timeout_seconds}")
        check(self.math_memory_mb >= 512, f"{prefix}.math_memory_mb",
              f"must be >= 512 (importing math-verify needs ~300 MB of address space), got {self.math_memory_mb}")
        check_positive(self.math_max_answer_chars, f"{prefix}.math_max_answer_chars", allow_zero=True)
        check_positive(self.math_cache_size, f"{prefix}.math_cache_size", allow_zero=True)
        check_positive(self.code_workers, f"{prefix}.code_workers")
        check_positive(self.code_cache_size, f"{prefix}.code_cache_size", allow_zero=True)
        check_positive(self.code_float_tolerance, f"{prefix}.code_float_tolerance", allow_zero=True)
        check_choice(self.sandbox_backend, SANDBOX_BACKENDS, f"{prefix}.sandbox_backend")
        check_positive(self.sandbox_cpu_seconds, f"{prefix}.sandbox_cpu_seconds")
        check(self.sandbox_wall_seconds >= self.sandbox_cpu_seconds, f"{prefix}.sandbox_wall_seconds",
              f"must be >= sandbox_cpu_seconds ({self.sandbox_cpu_seconds}), got {self.sandbox_wall_seconds}")
        check(self.sandbox_total_wall_seconds >= self.sandbox_wall_seconds, f"{prefix}.sandbox_total_wall_seconds",
              f"must be >= sandbox_wall_seconds ({self.sandbox_wall_seconds}), got {self.sandbox_total_wall_seconds}")
        check(self.sandbox_memory_mb >= 64, f"{prefix}.sandbox_memory_mb",
              f"must be >= 64 (the interpreter alone maps ~30 MB), got {self.sandbox_memory_mb}")
        check(self.sandbox_output_bytes >= 1024, f"{prefix}.sandbox_output_bytes",
              f"must be >= 1024, got {self.sandbox_output_bytes}")
        check(self.sandbox_max_processes >= 2, f"{prefix}.sandbox_max_processes",
              f"must be >= 2 (the supervisor and the program), got {self.sandbox_max_processes}")
        check_positive(self.sandbox_file_size_mb, f"{prefix}.sandbox_file_size_mb")
        check_positive(self.sandbox_tmpfs_mb, f"{prefix}.sandbox_tmpfs_mb")
        check(self.sandbox_wall_stretch >= 1.0, f"{prefix}.sandbox_wall_stretch",
              f"must be >= 1 (1: no stretch), got {self.sandbox_wall_stretch}")
        check_positive(self.sandbox_reuse_launches, f"{prefix}.sandbox_reuse_launches")
        check(self.sandbox_uid > 0, f"{prefix}.sandbox_uid", "must be an unprivileged uid (> 0), e.g. 65534")
        check(0 < self.sandbox_fallback_uid_base < 2**32 - 257, f"{prefix}.sandbox_fallback_uid_base",
              f"must be in (0, 2**32 - 257), got {self.sandbox_fallback_uid_base}")
