"""One command for a bare GPU machine: every GPU figure and GPU-only correctness check of srpo-mcore.

    bash scripts/gpu_check.sh --wheels wheels --out "$OUT"        # on the GPU machine (see docs/benchmarks.md)
    .venv/bin/python tools/gpu_check/check.py --mode cpu --out /tmp/gc   # the CPU rehearsal (tests run it)

Set-up (in this process, each command with its own deadline): install the carried wheels
(``pip install --no-index --no-deps --target``), build the native packing extension in place if it is not
importable, and make ``srpo_kernels`` importable from ``kernels/`` without installing the project. Then each part
runs in its own subprocess (tools/gpu_check/parts.py), killed at its own deadline and at the overall budget, so one
hang cannot take the others' time:

    environment   versions, device, what is importable (megatron-core, vLLM, Transformer Engine)
    kernel_tests  pytest tests/kernels (on CUDA: the bf16 and CUDA-only tests included); junit XML
    benchmark     the kernel benchmark at the target shapes vs the torch backend and Megatron's fused CE
    replay        the trainer from the fixture's saved rollouts (no vLLM), both kernel backends, checked against
                  the CPU replay's losses; step time and peak memory

Whatever fails, ``results.json`` (every part: pass / fail / skipped, seconds, error, details) and ``summary.txt``
are written to ``--out`` (default: $OUT), beside ``logs.txt`` (every command's output) and ``kernels_junit.xml``.
The exit status is 0 when no part failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PARTS_SCRIPT = Path(__file__).with_name("parts.py")
# Seconds per part on the GPU machine; the sum is the 8-minute budget. The CPU rehearsal uses its own.
GPU_DEADLINES = {"setup": 60, "environment": 30, "kernel_tests": 140, "benchmark": 110, "replay": 140}
# The rehearsal needs ~35 s of CPU time, but a shared 2-core machine can stretch that many times over: its deadlines
# only catch hangs.
CPU_DEADLINES = {"setup": 120, "environment": 120, "kernel_tests": 240, "benchmark": 240, "replay": 480}
BUDGET = {"gpu": 480.0, "cpu": 1200.0}
PARTS = ("environment", "kernel_tests", "benchmark", "replay")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT"), help="results folder (default: $OUT)")
    ap.add_argument("--wheels", default=None, help="folder of wheels to install first (no registry needed)")
    ap.add_argument("--mode", choices=("auto", "gpu", "cpu"), default="auto",
                    help="gpu: CUDA, bf16, target shapes; cpu: the rehearsal (Triton interpreter, fp32, tiny "
                         "shapes, gloo); auto: gpu when torch sees CUDA")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for everything (default: 8 minutes on the GPU, 20 for the CPU rehearsal)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {PARTS}")
    args = ap.parse_args(argv)
    if not args.out:
        ap.error("--out is required when $OUT is not set")
    args.parts = [p for p in args.parts.split(",") if p]
    if unknown := set(args.parts) - set(PARTS):
        ap.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    return args


class Deadline:
    def __init__(self, budget: float) -> None:
        self.end = time.monotonic() + budget

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


class Log:
    """Every command's output, in order, in OUT/logs.txt."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("w")

    def write(self, title: str, text: str) -> None:
        self.file.write(f"\n===== {title}\n{text}\n")
        self.file.flush()


def run_command(cmd: list[str], *, timeout: float, env: dict, log: Log, title: str) -> tuple[int | None, str]:
    """Run in a new session; on timeout kill the whole session. Returns (exit code or None on timeout, output)."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            code = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        out.seek(0)
        text = out.read()
    log.write(f"{title} ({'timed out' if code is None else f'exit {code}'}): {' '.join(cmd)}", text)
    return code, text


def tail(text: str, n: int = 1500) -> str:
    return text[-n:].strip()


def setup(args, env: dict, work: Path, log: Log, timeout: float) -> dict:
    """Wheels, the native extension, the ``srpo_kernels`` import name. Returns the part's result."""
    deadline = Deadline(timeout)
    steps = []
    python = sys.executable
    if args.wheels:
        wheels = sorted(Path(args.wheels).glob("*.whl"))
        if not wheels:
            return {"status": "fail", "error": f"--wheels {args.wheels}: no .whl files there"}
        target = work / "site"
        code, text = run_command([python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                                  "--no-cache-dir", "--target", str(target), *map(str, wheels)],
                                 timeout=deadline.left(), env=env, log=log, title="pip install wheels")
        if code != 0:
            return {"status": "fail", "error": f"pip install of {len(wheels)} wheels failed: {tail(text, 600)}"}
        env["PYTHONPATH"] = os.pathsep.join([str(target), env["PYTHONPATH"]])
        steps.append(f"installed {', '.join(w.name for w in wheels)}")
    probe = "import importlib.util as u, sys; sys.exit(0 if u.find_spec('srpo_mcore._C') else 1)"
    if subprocess.run([python, "-c", probe], cwd=REPO, env=env).returncode != 0:
        code, text = run_command([python, "setup.py", "build_ext", "--inplace"], timeout=deadline.left(), env=env,
                                 log=log, title="build srpo_mcore._C")
        if code != 0:
            return {"status": "fail", "error": f"building srpo_mcore._C (csrc/) failed: {tail(text, 600)}"}
        steps.append("built srpo_mcore._C in place")
    probe = "import importlib.util as u, sys; sys.exit(0 if u.find_spec('srpo_kernels') else 1)"
    if subprocess.run([python, "-c", probe], cwd=REPO, env=env).returncode != 0:
        shim = work / "shim"
        shim.mkdir(exist_ok=True)
        (shim / "srpo_kernels").symlink_to(REPO / "kernels")
        env["PYTHONPATH"] = os.pathsep.join([str(shim), env["PYTHONPATH"]])
        steps.append("srpo_kernels -> kernels/ through a symlink on PYTHONPATH")
    return {"status": "pass", "details": {"steps": steps}}


def run_part(name: str, args, env: dict, work: Path, log: Log, timeout: float) -> dict:
    result_path = work / f"{name}.json"
    cmd = [sys.executable, str(PARTS_SCRIPT), name, "--mode", args.mode, "--work", str(work),
           "--result", str(result_path)]
    code, text = run_command(cmd, timeout=timeout, env=env, log=log, title=f"part {name}")
    result = json.loads(result_path.read_text()) if result_path.is_file() else None
    if code is None:
        return {"status": "fail", "error": f"timed out after {timeout:.0f} s (killed)",
                "details": (result or {}).get("details"), "output_tail": tail(text)}
    if result is None:
        return {"status": "fail", "error": f"exit {code} without a result", "output_tail": tail(text)}
    if code != 0 and result.get("status") == "pass":
        result = {**result, "status": "fail", "error": f"exit {code}", "output_tail": tail(text)}
    return result


def summary_text(results: dict) -> str:
    lines = [f"srpo-mcore GPU check ({results['mode']} mode), {results['finished_utc']}, "
             f"{results['total_seconds']:.0f} s of {results['budget_s']:.0f} s"]
    for name, part in results["parts"].items():
        lines.append(f"{name:<14}{part['status']:<8}{part.get('seconds', 0):7.1f} s  {part.get('summary', '')}")
        if (error := (part.get("error") or "").strip()) and part["status"] != "skipped":
            lines.append(f"{'':<14}error: {error.splitlines()[-1][:300]}")
        elif error:
            lines[-1] += f"({error})"
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode == "auto":
        import torch

        args.mode = "gpu" if torch.cuda.is_available() else "cpu"
    deadlines = GPU_DEADLINES if args.mode == "gpu" else CPU_DEADLINES
    args.budget = args.budget or BUDGET[args.mode]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="srpo_gpu_check_"))
    log = Log(out / "logs.txt")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SRPO_GPU_CHECK_OUT": str(out),
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if args.mode == "cpu":
        env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    deadline = Deadline(args.budget)
    started = time.monotonic()
    results = {"mode": args.mode, "budget_s": args.budget, "parts": {}}

    def record(name: str, fn) -> None:
        t0 = time.monotonic()
        timeout = min(deadlines[name], deadline.left())
        if timeout < 1:
            part = {"status": "skipped", "error": "the overall budget was spent before this part"}
        else:
            try:
                part = fn(timeout)
            except Exception as e:  # the runner must always write its results
                part = {"status": "fail", "error": f"{type(e).__name__}: {e}"}
        part["seconds"] = time.monotonic() - t0
        results["parts"][name] = part
        write_results(out, results, started)

    record("setup", lambda t: setup(args, env, work, log, t))
    for name in PARTS:
        if name not in args.parts:
            results["parts"][name] = {"status": "skipped", "error": "not selected (--parts)"}
        elif results["parts"]["setup"]["status"] != "pass":
            results["parts"][name] = {"status": "skipped", "error": "set-up failed"}
        else:
            record(name, lambda t, name=name: run_part(name, args, env, work, log, t))
    junit = work / "kernels_junit.xml"
    if junit.is_file():
        shutil.copy(junit, out / "kernels_junit.xml")
    write_results(out, results, started)
    print((out / "summary.txt").read_text(), end="")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if any(p["status"] == "fail" for p in results["parts"].values()) else 0


def write_results(out: Path, results: dict, started: float) -> None:
    results["total_seconds"] = time.monotonic() - started
    results["finished_utc"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "summary.txt").write_text(summary_text(results))


if __name__ == "__main__":
    sys.exit(main())
