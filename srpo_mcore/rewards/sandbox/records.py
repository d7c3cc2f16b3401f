"""What goes into a sandbox launch and what comes out: limits, tests, outcomes, the CLI's result record."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from srpo_mcore.config.rewards import SANDBOX_BACKENDS, RewardConfig

STATUSES = ("ok", "wrong_answer", "runtime_error", "timeout", "memory_limit", "output_limit", "sandbox_error",
            "not_run")
BACKENDS = SANDBOX_BACKENDS  # rewards.sandbox_backend
STDERR_KEEP_BYTES = 64 << 10  # a test's stderr is kept up to this size


@dataclass(frozen=True)
class SandboxLimits:
    """Per-test limits (``cpu_seconds`` .. ``file_size_mb``) and per-launch ones (``total_wall_seconds``)."""

    cpu_seconds: float = 4.0
    wall_seconds: float = 10.0
    total_wall_seconds: float = 60.0
    memory_mb: int = 1024
    output_bytes: int = 1 << 20
    max_processes: int = 32
    file_size_mb: int = 16
    tmpfs_mb: int = 64
    wall_stretch: float = 3.0  # a program still computing at its wall limit may run this many times longer

    def to_spec(self) -> dict:
        return {"cpu_seconds": float(self.cpu_seconds), "wall_seconds": float(self.wall_seconds),
                "total_wall_seconds": float(self.total_wall_seconds), "memory_mb": int(self.memory_mb),
                "output_bytes": int(self.output_bytes), "max_processes": int(self.max_processes),
                "file_size_mb": int(self.file_size_mb), "wall_stretch": max(1.0, float(self.wall_stretch))}


def limits_from_config(config: RewardConfig) -> SandboxLimits:
    """The ``rewards.sandbox_*`` limits of a config section."""
    return SandboxLimits(cpu_seconds=config.sandbox_cpu_seconds, wall_seconds=config.sandbox_wall_seconds,
                         total_wall_seconds=config.sandbox_total_wall_seconds, memory_mb=config.sandbox_memory_mb,
                         output_bytes=config.sandbox_output_bytes, max_processes=config.sandbox_max_processes,
                         file_size_mb=config.sandbox_file_size_mb, tmpfs_mb=config.sandbox_tmpfs_mb,
                         wall_stretch=config.sandbox_wall_stretch)


@dataclass(frozen=True)
class HarnessTest:
    """One test run in the sandbox. ``kind``: ``stdin`` (``input`` is fed on standard input), ``functional``
    (``input`` holds one JSON argument per line; ``entry_point`` is called) or ``check`` (``input`` is Python
    defining ``check(candidate)``; ``check(<entry_point>)`` is called, or the source calls it itself)."""

    kind: str
    input: str = ""
    entry_point: str | None = None
    cpu_seconds: float | None = None

    def to_spec(self, limits: SandboxLimits) -> dict:
        spec: dict[str, object] = {"kind": self.kind, "input": self.input or "", "entry_point": self.entry_point}
        if self.cpu_seconds:
            spec["cpu_seconds"] = float(self.cpu_seconds)
            spec["wall_seconds"] = max(limits.wall_seconds, 2 * float(self.cpu_seconds) + 1)
        return spec


@dataclass
class TestOutcome:
    """What happened to one test; ``value_json`` is a functional test's return value (JSON, from the
    sandbox: parse it as untrusted data)."""

    status: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    max_rss_mb: float = 0.0
    value_json: str | None = None
    error: str = ""


@dataclass
class SandboxResult:
    """One program run (the CLI's JSON line)."""

    status: str
    exit_code: int | None
    stdout: str
    stderr: str
    cpu_seconds: float
    wall_seconds: float
    backend: str
    error: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


class SandboxUnavailable(RuntimeError):
    """The requested backend cannot run on this machine."""

