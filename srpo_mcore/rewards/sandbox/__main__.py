"""``python -m srpo_mcore.rewards.sandbox PROGRAM.py [--stdin FILE] [--timeout S] [--memory-mb N]``: run one
program in the sandbox and print one JSON line (status, exit_code, stdout, stderr, cpu_seconds, wall_seconds)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from srpo_mcore.config.rewards import RewardConfig
from srpo_mcore.rewards.sandbox.records import BACKENDS, SandboxResult, SandboxUnavailable, limits_from_config
from srpo_mcore.rewards.sandbox.runner import Sandbox


def main(argv: Sequence[str] | None = None) -> int:
    defaults = RewardConfig()
    ap = argparse.ArgumentParser(prog="python -m srpo_mcore.rewards.sandbox",
                                 description="Run one Python program in the sandbox; print one JSON line.")
    ap.add_argument("program", help="the Python program to run")
    ap.add_argument("--stdin", help="file fed to the program's standard input")
    ap.add_argument("--timeout", type=float, default=defaults.sandbox_cpu_seconds, help="CPU seconds")
    ap.add_argument("--wall-timeout", type=float, default=None,
                    help="wall-clock seconds (default: max(2 x timeout + 1, sandbox_wall_seconds))")
    ap.add_argument("--memory-mb", type=int, default=defaults.sandbox_memory_mb, help="address-space limit")
    ap.add_argument("--output-bytes", type=int, default=defaults.sandbox_output_bytes)
    ap.add_argument("--backend", choices=BACKENDS, default=defaults.sandbox_backend)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    wall = args.wall_timeout or max(2 * args.timeout + 1, defaults.sandbox_wall_seconds)
    limits = dataclasses.replace(limits_from_config(defaults), cpu_seconds=args.timeout, wall_seconds=wall,
                                 total_wall_seconds=wall * defaults.sandbox_wall_stretch + 5,
                                 memory_mb=args.memory_mb, output_bytes=args.output_bytes)
    source = Path(args.program).read_text(encoding="utf-8", errors="surrogateescape")
    stdin = Path(args.stdin).read_text(encoding="utf-8", errors="surrogateescape") if args.stdin else ""
    try:
        sandbox = Sandbox(limits, backend=args.backend, python=defaults.sandbox_python, uid=defaults.sandbox_uid)
        with sandbox:
            result = sandbox.run(source, stdin, filename=Path(args.program).name)
    except SandboxUnavailable as e:
        result = SandboxResult("sandbox_error", None, "", "", 0.0, 0.0, args.backend, error=str(e))
    print(result.to_json(), flush=True)
    return 0 if result.status != "sandbox_error" else 2


if __name__ == "__main__":
    sys.exit(main())
