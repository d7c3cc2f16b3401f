"""Compile every Triton kernel of srpo_kernels for an H100 (sm_90) on a machine without a GPU.

Triton's interpreter (how the CPU tests run the kernels) does not type-check or lower anything, so a kernel
can pass every CPU test and still fail to compile for a GPU. This script runs Triton's real compiler down to a
cubin (it needs no GPU: ptxas ships with triton) for the launch configurations the wrappers use, in bf16, and
prints registers and spills as ptxas reports them. Run it without TRITON_INTERPRET:

    env -u TRITON_INTERPRET .venv/bin/python tests/kernels/workers/compile_sm90.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("run without TRITON_INTERPRET=1: the kernels must be built for the GPU compiler")

import triton  # noqa: E402
from srpo_kernels import grpo_loss, logprobs  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.nvidia.compiler import get_ptxas  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)


def variants():
    """(kernel, pointer/scalar signature, constexprs, num_warps) for each launch the wrappers make on H100."""
    for dtype in ("bf16", "fp32"):
        for ent in (False, True):
            yield logprobs._partials_kernel, {
                "logits_ptr": f"*{dtype}", "logits_row_stride": "i32", "targets_ptr": "*i64",
                "partials_ptr": "*fp32", "n_rows": "i32", "col_start": "i32", "n_valid": "i32",
                "inv_temp": "fp32", "ignore_index": "i32",
            }, {"COMPUTE_ENTROPY": ent, "BLOCK_V": 4096}, 8
    for ent in (False, True):
        yield logprobs._grad_kernel, {
            "logits_ptr": "*bf16", "logits_row_stride": "i32", "grad_ptr": "*bf16", "grad_row_stride": "i32",
            "targets_ptr": "*i64", "lse_ptr": "*fp32", "ent_ptr": "*fp32", "g_logp_ptr": "*fp32",
            "g_ent_ptr": "*fp32", "n_cols": "i32", "col_start": "i32", "n_valid": "i32", "inv_temp": "fp32",
            "ignore_index": "i32",
        }, {"HAS_ENT_GRAD": ent, "BLOCK_V": 4096}, 8
        yield logprobs._combine_kernel, {
            "partials_ptr": "*fp32", "n_parts": "i32", "targets_ptr": "*i64", "lse_ptr": "*fp32",
            "logp_ptr": "*fp32", "ent_ptr": "*fp32", "n_rows": "i32", "vocab_size": "i32", "ignore_index": "i32",
        }, {"COMPUTE_ENTROPY": ent, "BLOCK_N": 1024}, 4
    for flags in (False, True):
        yield grpo_loss._grpo_token_kernel, {
            **{name: "*fp32" for name in ("logp_ptr", "ent_ptr", "old_ptr", "adv_ptr", "ref_ptr", "rollout_ptr",
                                          "loss_w_ptr", "metric_w_ptr", "g_logp_ptr", "g_ent_ptr", "sums_ptr")},
            "n_tokens": "i32", **{name: "fp32" for name in ("eps_low", "eps_high", "dual_c", "kl_coef",
                                                             "ent_coef", "tis_cap")},
        }, {"HAS_DUAL": flags, "HAS_KL": flags, "HAS_ENT": flags, "HAS_TIS": flags, "N_SUMS": 9,
            "BLOCK_N": 1024}, 4


def ptxas_usage(ptx: str) -> str:
    arch = re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        proc = subprocess.run([get_ptxas(TARGET.arch).path, f"-arch={arch}", "-v", str(src), "-o", str(Path(tmp) / "k.cubin")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ptxas failed:\n{proc.stderr}")
        out = proc.stderr
    regs = re.search(r"Used (\d+) registers", out)
    spills = re.search(r"(\d+) bytes spill stores", out)
    return f"{arch} regs={regs.group(1) if regs else '?'} spill_stores={spills.group(1) if spills else '?'}B"


def main() -> None:
    for kernel, signature, constexprs, warps in variants():
        start = time.perf_counter()
        sig = {name: signature.get(name, "constexpr") for name in kernel.arg_names}
        compiled = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=constexprs),
                                  target=TARGET, options={"num_warps": warps})
        flags = ",".join(f"{k}={v}" for k, v in constexprs.items())
        print(f"OK {kernel.__name__}[{flags}] warps={warps} {ptxas_usage(compiled.asm['ptx'])} "
              f"({time.perf_counter() - start:.1f}s)", flush=True)
    print("ALL KERNELS COMPILED")


if __name__ == "__main__":
    main()
