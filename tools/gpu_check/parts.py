"""The parts of the GPU check, one per process (tools/gpu_check/check.py starts them and enforces deadlines).

    python tools/gpu_check/parts.py PART --mode gpu|cpu --work DIR --result FILE.json

Each part writes ``{"status": "pass" | "fail" | "skipped", "summary": one line, "error": ..., "details": {...}}``
to ``--result`` (partial details are written as they come, so a part killed at its deadline still reports them).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path("tools/gpu_check/fixture")  # relative to the repository root, as in its config.yaml

# The kernel benchmark at the target shapes (Qwen2.5 vocabulary 152064; 32B hidden 5120; V/TP=19008 at TP8).
GPU_BENCHMARKS = {  # name -> (benchmarks/kernels/<op>.py, its arguments)
    "logprobs_tp8": ("logprobs", ["--n", "32768", "--v", "152064", "--tp", "8", "--dtype", "bfloat16",
                                  "--baselines", "naive,torch,megatron"]),
    "grpo_loss_tp8": ("grpo_loss", ["--n", "32768", "--v", "152064", "--tp", "8", "--dtype", "bfloat16",
                                    "--baselines", "naive,torch"]),
    "fused_lm_head_tp1": ("fused_linear_logprobs", ["--n", "32768", "--v", "152064", "--tp", "1", "--h", "5120",
                                                    "--dtype", "bfloat16", "--baselines", "naive,torch"]),
}
# Losses compared with the CPU replay: exact to fp32 noise on CPU; bf16 on the GPU (a bf16 forward moves token
# log-probs by ~1e-2, and the weights drift apart a little more every step).
# The GPU tolerance is a first estimate, to be calibrated from the first GPU run's per-key differences (in
# results.json: replay.details.<backend>.comparison.max_abs_diff_by_key).
COMPARED = ("loss/pg_loss", "loss/entropy", "optim/grad_norm")
TOLERANCE = {"cpu": (1e-5, 1e-4), "gpu": (5e-3, 5e-2)}  # (absolute, relative)


def kernel_benchmark_main(op: str, argv: list[str]) -> int:
    """One op's kernel benchmark (benchmarks/kernels/<op>.py; they time CUDA kernels only)."""
    import importlib

    sys.path.insert(0, str(REPO))
    return importlib.import_module(f"benchmarks.kernels.{op}").main(argv)


class Result:
    def __init__(self, path: Path) -> None:
        self.path, self.data = path, {"status": "fail", "summary": "", "error": None, "details": {}}

    def update(self, **kw) -> None:
        self.data.update(kw)
        self.path.write_text(json.dumps(self.data, indent=1, default=str))


# --------------------------------------------------------------------------------------------------- parts


def environment(mode: str, work: Path, result: Result) -> None:
    import platform

    import torch
    import triton

    details = {"python": platform.python_version(), "torch": torch.__version__, "triton": triton.__version__,
               "cuda": torch.version.cuda, "device": torch.cuda.get_device_name() if torch.cuda.is_available()
               else "cpu"}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        details.update(capability=f"{props.major}.{props.minor}", memory_gib=props.total_memory / 2**30,
                       multiprocessors=props.multi_processor_count)
    # Found, not imported (importing vLLM alone takes ~20 s); the benchmark and the replay import what they use.
    for module, dist in (("megatron.core", "megatron-core"), ("transformers", "transformers"), ("vllm", "vllm"),
                         ("transformer_engine", "transformer-engine"), ("math_verify", "math-verify")):
        details[module] = _installed_version(module, dist)
    ok = mode == "cpu" or torch.cuda.is_available()
    result.update(status="pass" if ok else "fail", details=details,
                  summary=f"{details['device']}, torch {details['torch']}, triton {details['triton']}, "
                          f"megatron-core {details['megatron.core']}",
                  error=None if ok else "--mode gpu but torch sees no CUDA device")


def _installed_version(module: str, dist: str) -> str:
    import importlib.metadata

    try:
        if importlib.util.find_spec(module) is None:
            return "absent"
    except ModuleNotFoundError:
        return "absent"
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "present (no distribution metadata)"


def kernel_tests(mode: str, work: Path, result: Result) -> None:
    junit = work / "kernels_junit.xml"
    # CPU rehearsal: one quick file (the interpreter makes the whole folder take minutes); GPU: all of it.
    target = ["tests/kernels/test_backends.py"] if mode == "cpu" else ["tests/kernels"]
    # -v: each test's outcome reaches logs.txt as it finishes, even if the part is killed at its deadline;
    # pytest-timeout (in the GPU image) stops a single hanging test so the junit file is still written.
    per_test = ["--timeout=60"] if importlib.util.find_spec("pytest_timeout") else []
    proc = subprocess.run([sys.executable, "-m", "pytest", *target, "-v", "-p", "no:cacheprovider", *per_test,
                           f"--junitxml={junit}", "-o", "junit_family=xunit2"], cwd=REPO, capture_output=True,
                          text=True)
    print(proc.stdout[-20000:], proc.stderr[-5000:])
    if not junit.is_file():
        result.update(error=f"pytest wrote no junit file (exit {proc.returncode}): {proc.stdout[-1500:]}")
        return
    counts, failures = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}, []
    for suite in ET.parse(junit).getroot().iter("testsuite"):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    for case in ET.parse(junit).getroot().iter("testcase"):
        for bad in [*case.findall("failure"), *case.findall("error")]:
            failures.append({"test": f"{case.get('classname')}::{case.get('name')}",
                             "message": (bad.get("message") or "")[:400]})
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    result.update(status="pass" if proc.returncode == 0 else "fail", details={**counts, "failed": failures},
                  summary=f"{passed} passed, {counts['failures'] + counts['errors']} failed, "
                          f"{counts['skipped']} skipped",
                  error=None if proc.returncode == 0 else f"pytest exit {proc.returncode}; first failures: "
                  + "; ".join(f["test"] for f in failures[:5]))


def benchmark(mode: str, work: Path, result: Result) -> None:
    # CPU: the benchmark's own mode without CUDA (interpreter, fp32, small shapes, vs the fp64 references)
    if mode != "gpu":  # the benchmarks time CUDA kernels; on CPU the kernel_tests part is the correctness check
        result.update(status="skipped", summary="the kernel benchmarks time CUDA kernels (CPU: see kernel_tests)")
        return
    details, failed = {}, []
    for name, (op, argv) in GPU_BENCHMARKS.items():
        path = work / f"bench_{name}.json"
        t0 = time.monotonic()
        code = kernel_benchmark_main(op, [*argv, "--json", str(path)])
        details[name] = {"argv": argv, "exit": code, "seconds": time.monotonic() - t0,
                         "result": json.loads(path.read_text()) if path.is_file() else None}
        if code != 0:
            failed.append(name)
        result.update(details=details)  # keep what is done if a later run hangs
    rows = [r for d in details.values() if d["result"] for r in d["result"].get("rows") or []]
    summary = "; ".join(f"{r['kernel']}/{r['impl']} {r['fwd_bwd_ms']:.2f} ms" for r in rows
                        if r.get("fwd_bwd_ms") and r["impl"] in ("srpo triton", "megatron fused CE"))
    result.update(status="fail" if failed else "pass", details=details,
                  summary=summary or f"{len(GPU_BENCHMARKS)} run(s)", error=f"non-zero exit: {failed}" if failed else None)


def replay(mode: str, work: Path, result: Result) -> None:
    reference = [json.loads(line) for line in (REPO / FIXTURE / "cpu_replay_metrics.jsonl").read_text().splitlines()]
    # CPU: the Triton interpreter is slow, so the triton backend replays one step there.
    plans = [("torch", len(reference)), ("triton", len(reference) if mode == "gpu" else 1)]
    details, errors = {}, []
    for backend, steps in plans:
        run_dir = work / f"replay_{backend}"
        cmd = [sys.executable, str(Path(__file__)), "replay_one", "--mode", mode, "--work", str(run_dir),
               "--result", str(work / f"replay_{backend}.json"), "--backend", backend, "--steps", str(steps)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        print(f"--- replay {backend}\n{proc.stdout[-8000:]}\n{proc.stderr[-12000:]}")
        one = json.loads((work / f"replay_{backend}.json").read_text()) \
            if (work / f"replay_{backend}.json").is_file() else {}
        if proc.returncode != 0 or not one.get("rows"):
            errors.append(f"{backend}: exit {proc.returncode}: {(one.get('error') or proc.stderr[-1200:]).strip()}")
            details[backend] = one
            result.update(details=details)
            continue
        one["comparison"] = compare(one["rows"], reference, mode)
        if not one["comparison"]["ok"]:
            errors.append(f"{backend}: losses outside bf16 tolerance: {one['comparison']['outside']}")
        details[backend] = one
        result.update(details=details)
    summary = "; ".join(f"{b}: {d['steps']} steps, step {d['median_step_s']:.2f} s, peak {d['peak_mib']:.0f} MiB, "
                        f"max |dloss| {d['comparison']['max_abs_diff']:.1e}"
                        for b, d in details.items() if d.get("comparison"))
    result.update(status="fail" if errors else "pass", details=details, summary=summary,
                  error="; ".join(errors) if errors else None)


def compare(rows: list[dict], reference: list[dict], mode: str) -> dict:
    atol, rtol = TOLERANCE[mode]
    outside, by_key = [], {key: 0.0 for key in COMPARED}
    for row, ref in zip(rows, reference):
        for key in COMPARED:
            diff = abs(row.get(key, float("nan")) - ref[key])
            by_key[key] = max(by_key[key], diff) if diff == diff else float("inf")
            if not diff <= atol + rtol * abs(ref[key]):
                outside.append({"step": row["step"], "key": key, "value": row.get(key), "cpu": ref[key]})
    return {"ok": not outside, "outside": outside, "max_abs_diff": max(by_key.values()),
            "max_abs_diff_by_key": by_key, "tolerance": {"abs": atol, "rel": rtol}, "steps": len(rows),
            "mismatch_mean_abs": [row.get("mismatch/mean_abs") for row in rows]}


def replay_one(mode: str, work: Path, result_path: Path, backend: str, steps: int) -> int:
    """One rank, in this process (so its peak memory can be read): the entry point with the fixture's config
    and ``--replay``. vLLM and math-verify are made unimportable: a replay must not need them."""
    import socket

    for module in ("vllm", "math_verify"):
        sys.modules[module] = None  # import raises ImportError
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    sys.path.insert(0, str(REPO))
    import torch

    from pretrain_srpo import main as entry_point

    overrides = [f"train.run_dir={work}", f"train.kernel_backend={backend}", f"train.steps={steps}",
                 "parallel.tensor_model_parallel_size=1", "train.save_interval=0", "train.mismatch_alarm_action=warn"]
    if mode == "gpu":
        overrides += ["model.params_dtype=bfloat16", "parallel.backend=nccl"]
    else:
        overrides += ["model.params_dtype=float32", "parallel.backend=gloo"]
    out = {"backend": backend, "steps": steps, "overrides": overrides, "error": None}
    t0 = time.monotonic()
    code = entry_point(["--config", str(FIXTURE / "config.yaml"), "--replay", str(FIXTURE / "rollouts"),
                        *overrides])
    out["seconds"] = time.monotonic() - t0
    out["exit"] = code
    metrics = work / "metrics.jsonl"
    out["rows"] = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    times = [r["time/step_s"] for r in out["rows"] if "time/step_s" in r]
    out["median_step_s"] = statistics.median(times) if times else float("nan")
    out["first_step_s"] = times[0] if times else float("nan")
    if torch.cuda.is_available():
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    else:
        import resource

        out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's RSS
    out["checkpoint"] = (work / "checkpoints" / "latest").read_text() if (work / "checkpoints" / "latest").is_file() \
        else None
    if code != 0:
        out["error"] = f"pretrain_srpo.py exited {code}"
    elif out["checkpoint"] is None:
        out["error"] = "no checkpoint written"
        code = 1
    result_path.write_text(json.dumps(out, indent=1, default=str))
    return code


PARTS = {"environment": environment, "kernel_tests": kernel_tests, "benchmark": benchmark, "replay": replay}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=[*PARTS, "replay_one"])
    ap.add_argument("--mode", choices=("gpu", "cpu"), required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--result", type=Path, required=True)
    ap.add_argument("--backend", choices=("torch", "triton"), help="replay_one: the kernel backend")
    ap.add_argument("--steps", type=int, help="replay_one: how many of the fixture's steps")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.part == "replay_one":
        return replay_one(args.mode, args.work, args.result, args.backend, args.steps)
    if args.mode == "cpu":
        from srpo_mcore.platform import configure_process_environment

        configure_process_environment()  # the Triton interpreter, before any kernel module is imported
    result = Result(args.result)
    if os.environ.get("SRPO_GPU_CHECK_HANG") == args.part:  # test aid: a part that hangs (the deadline test)
        time.sleep(3600)
    try:
        PARTS[args.part](args.mode, args.work, result)
    except Exception as e:
        import traceback

        traceback.print_exc()
        result.update(status="fail", error=f"{type(e).__name__}: {e}")
    return 0 if result.data["status"] != "fail" else 1


if __name__ == "__main__":
    sys.exit(main())
