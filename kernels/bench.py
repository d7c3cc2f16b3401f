"""Benchmark the srpo kernels against baselines on a GPU; check them against the fp64 reference on CPU.

    python -m srpo_kernels.bench --n 32768 --v 152064 --tp 8 --dtype bf16 --kernels logprobs,grpo_loss
    python -m srpo_kernels.bench --n 32768 --v 152064 --tp 1 --h 5120 --kernels fused_linear_logprobs --json out.json

TP is simulated on one GPU: every kernel gets one rank's shard (``ceil(V / TP)`` vocab columns) and no
process group, so collectives (a few ``O(N)`` all-gathers / all-reduces) are not timed.

Per kernel and implementation it prints the median time of the forward (under ``no_grad``, as when computing
old/reference log-probs) and of forward + backward, the achieved rate (GB/s for the memory-bound log-prob
and GRPO kernels, counting 1 pass over the logits forward and 3 forward + backward; TFLOP/s for the fused LM
head, counting 2NHV forward and 6NHV forward + backward), that rate as a % of the detected GPU's roofline,
and the peak memory allocated beyond the inputs during forward + backward (which includes the gradients it
returns). Baselines: naive PyTorch (``log_softmax`` + ``gather``), the srpo torch backend (the reference run
in checkpointed token chunks), Megatron-Core's vocab-parallel cross entropy (fused and unfused), and
Liger-Kernel's cross entropy / fused linear cross entropy when importable. Cross-entropy baselines compute
``-logp`` only (no entropy).

Without CUDA it runs the Triton kernels in Triton's interpreter at a small shape, compares them with the
fp64 references (the same ones the tests use), prints the errors, says timings need a GPU, and exits 0
(1 if a comparison fails).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

KERNELS = ("logprobs", "fused_linear_logprobs", "grpo_loss")

# Datasheet peaks: (HBM bandwidth in bytes/s, dense bf16 tensor-core FLOP/s).
GPU_PEAKS: dict[str, tuple[float, float]] = {
    "H100 SXM": (3.35e12, 989e12),
    "H100 NVL": (3.9e12, 835e12),
    "H100 PCIe": (2.0e12, 756e12),
    "H200": (4.8e12, 989e12),
}


def detect_gpu(device_name: str) -> str | None:
    """Key of :data:`GPU_PEAKS` for a ``torch.cuda.get_device_name()`` string, or None if unknown."""
    name = device_name.upper()
    if "H200" in name:
        return "H200"
    if "H100" in name:
        return "H100 NVL" if "NVL" in name else "H100 PCIe" if "PCIE" in name else "H100 SXM"
    return None


@dataclass
class Row:
    kernel: str
    impl: str
    fwd_ms: float | None = None
    fwd_bwd_ms: float | None = None
    unit: str = ""
    fwd_rate: float | None = None
    fwd_bwd_rate: float | None = None
    fwd_pct_roofline: float | None = None
    fwd_bwd_pct_roofline: float | None = None
    peak_extra_mib: float | None = None
    note: str = ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m srpo_kernels.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=32768, help="tokens")
    p.add_argument("--v", type=int, default=152064, help="full (padded) vocabulary size")
    p.add_argument("--h", type=int, default=5120, help="hidden size (fused_linear_logprobs)")
    p.add_argument("--tp", type=int, default=8, help="simulated TP size: kernels see V/TP vocab columns")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16")
    p.add_argument("--kernels", default=",".join(KERNELS), help=f"comma-separated subset of {KERNELS}")
    p.add_argument("--entropy", action="store_true", help="also compute the entropy (and its gradient)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--block-v", type=int, default=None, help="override the Triton vocab tile (tuning)")
    p.add_argument("--vocab-chunk", type=int, default=None, help="override the fused LM head's vocab chunk")
    p.add_argument("--baselines", default="naive,torch,megatron,liger",
                   help="comma-separated subset of naive,torch,megatron,liger")
    p.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON")
    args = p.parse_args(argv)
    args.kernels = [k for k in args.kernels.split(",") if k]
    if unknown := set(args.kernels) - set(KERNELS):
        p.error(f"unknown kernels {sorted(unknown)}; choose from {KERNELS}")
    args.baselines = set(args.baselines.split(","))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        # Same as srpo_mcore.platform.configure_process_environment(): before the kernel modules are imported.
        os.environ.setdefault("TRITON_INTERPRET", "1")
        return run_cpu_check(args)
    return run_gpu_benchmark(args)


# ----------------------------------------------------------------------------------------------- CPU check


def run_cpu_check(args: argparse.Namespace) -> int:
    """Interpreter run of each Triton kernel at a small fp32 shape vs. its fp64 reference."""
    checks = {"logprobs": _check_logprobs, "fused_linear_logprobs": _check_fused_linear, "grpo_loss": _check_grpo}
    results, ok = [], True
    print("No CUDA device: checking the Triton kernels (interpreter, fp32) against the fp64 references.")
    print(f"{'kernel':<24}{'quantity':<16}{'max rel err':>14}")
    for kernel in args.kernels:
        for quantity, err in checks[kernel]().items():
            passed = err <= 1e-5
            ok &= passed
            results.append({"kernel": kernel, "quantity": quantity, "max_rel_err": err, "passed": passed})
            print(f"{kernel:<24}{quantity:<16}{err:>14.2e}{'' if passed else '  FAIL (> 1e-5)'}")
    print("Timings need a GPU: rerun this command on a CUDA machine for the benchmark table.")
    if args.json:
        _write_json(args.json, {"device": "cpu (Triton interpreter)", "correctness": results, "timings": None})
    return 0 if ok else 1


def _rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    finite = torch.isfinite(expected)
    if not torch.equal(finite, torch.isfinite(actual)):
        return math.inf
    diff = (actual.double() - expected.double())[finite].abs().max()
    return (diff / expected[finite].abs().max().clamp(min=1e-30)).item()


def _check_logprobs() -> dict[str, float]:
    from srpo_kernels.logprobs import logprobs
    from srpo_kernels.logprobs_reference import reference_logprobs

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(37, 96, generator=gen) * 3
    targets = torch.randint(0, 90, (37,), generator=gen)
    targets[5] = -100
    out = {}
    for name, fn, x in (("triton", logprobs, logits.clone()), ("ref", reference_logprobs, logits.double())):
        x.requires_grad_(True)
        logp, ent = fn(x, targets, vocab_size=90, temperature=0.7, compute_entropy=True)
        (logp.sum() + ent.sum()).backward()
        out[name] = (logp, ent, x.grad)
    return {q: _rel(a, b) for q, a, b in zip(("logp", "entropy", "grad_logits"), out["triton"], out["ref"])}


def _check_fused_linear() -> dict[str, float]:
    from srpo_kernels.fused_linear_logprobs import fused_linear_logprobs
    from srpo_kernels.fused_linear_logprobs_reference import reference_fused_linear_logprobs

    gen = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(24, 32, generator=gen), torch.randn(96, 32, generator=gen) * 0.3
    targets = torch.randint(0, 90, (24,), generator=gen)
    out = {}
    for name, fn, dtype in (("triton", fused_linear_logprobs, torch.float32),
                            ("ref", reference_fused_linear_logprobs, torch.float64)):
        h = hidden.detach().to(dtype).requires_grad_(True)
        w = weight.detach().to(dtype).requires_grad_(True)
        kwargs = {"vocab_chunk_size": 40} if name == "triton" else {}
        logp, ent = fn(h, w, targets, vocab_size=90, compute_entropy=True, **kwargs)
        (logp.sum() + ent.sum()).backward()
        out[name] = (logp, ent, h.grad, w.grad)
    names = ("logp", "entropy", "grad_hidden", "grad_weight")
    return {q: _rel(a, b) for q, a, b in zip(names, out["triton"], out["ref"])}


def _check_grpo() -> dict[str, float]:
    from srpo_kernels.grpo_loss import grpo_loss
    from srpo_kernels.grpo_loss_reference import GRPOLossConfig, reference_grpo_loss

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 9, 96, generator=gen) * 2
    targets = torch.randint(0, 90, (4, 9), generator=gen)
    old = -torch.rand(4, 9, generator=gen) * 5
    adv, mask = torch.randn(4, 9, generator=gen), torch.rand(4, 9, generator=gen) > 0.3
    cfg = GRPOLossConfig(dual_clip_c=3.0, kl_coef=0.05, entropy_coef=0.01)
    out = {}
    for name, fn, x in (("triton", grpo_loss, logits.clone()), ("ref", reference_grpo_loss, logits.double())):
        x.requires_grad_(True)
        loss, metrics = fn(x, targets, old, adv, mask, config=cfg, ref_logp=old + 0.1, vocab_size=90)
        loss.backward()
        out[name] = (loss, x.grad, torch.stack(list(metrics.values())))
    return {q: _rel(a, b) for q, a, b in zip(("loss", "grad_logits", "metrics"), out["triton"], out["ref"])}


# ------------------------------------------------------------------------------------------- GPU benchmark


def run_gpu_benchmark(args: argparse.Namespace) -> int:
    from triton.testing import do_bench

    device_name = torch.cuda.get_device_name()
    gpu = detect_gpu(device_name)
    peak_bw, peak_flops = GPU_PEAKS.get(gpu, (None, None))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    shard = -(-args.v // args.tp)
    print(f"device: {device_name} -> roofline {gpu or 'unknown (no % column)'}; dtype {args.dtype}; "
          f"N={args.n} V={args.v} TP={args.tp} (shard V/TP={shard}) H={args.h}; entropy={args.entropy}")

    rows: list[Row] = []
    for kernel in args.kernels:
        torch.cuda.empty_cache()
        inputs = _make_inputs(kernel, args, shard, dtype)
        for impl, fn in _candidates(kernel, args, inputs).items():
            row = Row(kernel, impl)
            try:
                row.fwd_ms = do_bench(lambda fn=fn: _no_grad(fn), warmup=5, rep=50, return_mode="median")
                row.fwd_bwd_ms = do_bench(lambda fn=fn, x=inputs: _fwd_bwd(fn, x), warmup=5, rep=50,
                                          return_mode="median")
                row.peak_extra_mib = _peak_extra_mib(lambda fn=fn, x=inputs: _fwd_bwd(fn, x))
            except torch.cuda.OutOfMemoryError:
                row.note = "out of memory"
                torch.cuda.empty_cache()
            _fill_rates(row, kernel, args, shard, dtype, peak_bw, peak_flops)
            rows.append(row)
            _print_row(row, first=len(rows) == 1)
        del inputs
    if args.json:
        _write_json(args.json, {"device": device_name, "roofline": gpu, "args": {**vars(args),
                    "baselines": sorted(args.baselines)}, "rows": [asdict(r) for r in rows]})
    return 0


def _make_inputs(kernel: str, args, shard: int, dtype: torch.dtype, device: str = "cuda") -> dict:
    gen = torch.Generator(device=device).manual_seed(0)
    n, kw = args.n, {"device": device, "generator": gen}
    targets = torch.randint(0, shard, (n,), **kw)
    if kernel == "fused_linear_logprobs":
        hidden = torch.randn(n, args.h, dtype=dtype, **kw).requires_grad_(True)
        weight = (torch.randn(shard, args.h, dtype=dtype, **kw) / math.sqrt(args.h)).requires_grad_(True)
        return {"hidden": hidden, "weight": weight, "targets": targets, "grad_of": (hidden, weight)}
    logits = (torch.randn(n, shard, dtype=dtype, **kw) * 2).requires_grad_(True)
    inputs = {"logits": logits, "targets": targets, "grad_of": (logits,)}
    if kernel == "grpo_loss":
        inputs.update(
            old_logp=-torch.rand(n, **kw) * 5,
            advantages=torch.randn(n, **kw),
            loss_mask=torch.rand(n, **kw) < 0.8,
        )
    return inputs


def _candidates(kernel: str, args, x: dict) -> dict[str, Callable[[], torch.Tensor]]:
    """name -> a closure returning the scalar whose gradient the forward + backward timing takes."""
    from srpo_kernels.backends import TORCH_TOKEN_CHUNK

    temp, ent = args.temperature, args.entropy
    want = args.baselines
    out: dict[str, Callable[[], torch.Tensor]] = {}
    if kernel == "logprobs":
        from srpo_kernels.logprobs import logprobs
        from srpo_kernels.logprobs_reference import reference_logprobs

        def total(res):
            return res[0].sum() + (res[1].sum() if ent else 0.0)

        out["srpo triton"] = lambda: total(logprobs(x["logits"], x["targets"], temperature=temp,
                                                    compute_entropy=ent, block_v=args.block_v))
        if "torch" in want:
            out["srpo torch (chunked)"] = lambda: total(reference_logprobs(
                x["logits"], x["targets"], temperature=temp, compute_entropy=ent, chunk_size=TORCH_TOKEN_CHUNK))
        if "naive" in want:
            out["naive torch"] = lambda: total(_naive_logprobs(x["logits"], x["targets"], temp, ent))
        out.update(_megatron_ce(x, temp) if "megatron" in want else {})
        # last: Liger's cross entropy overwrites the logits with their gradient during its forward
        out.update(_liger_ce(x, temp) if "liger" in want else {})
    elif kernel == "fused_linear_logprobs":
        from srpo_kernels.fused_linear_logprobs import fused_linear_logprobs
        from srpo_kernels.fused_linear_logprobs_reference import reference_fused_linear_logprobs

        def total(res):
            return res[0].sum() + (res[1].sum() if ent else 0.0)

        args3 = (x["hidden"], x["weight"], x["targets"])
        out["srpo triton"] = lambda: total(fused_linear_logprobs(
            *args3, temperature=temp, compute_entropy=ent, vocab_chunk_size=args.vocab_chunk, block_v=args.block_v))
        if "torch" in want:
            out["srpo torch (chunked)"] = lambda: total(reference_fused_linear_logprobs(
                *args3, temperature=temp, compute_entropy=ent, chunk_size=TORCH_TOKEN_CHUNK))
        if "naive" in want:
            out["naive torch"] = lambda: total(_naive_logprobs(x["hidden"] @ x["weight"].T, x["targets"], temp, ent))
        out.update(_liger_flce(x, temp) if "liger" in want else {})
    else:
        from srpo_kernels.grpo_loss import grpo_loss
        from srpo_kernels.grpo_loss_reference import (
            GRPOLossConfig,
            grpo_loss_from_logprobs,
            reference_grpo_loss,
        )

        cfg = GRPOLossConfig(entropy_coef=0.01 if ent else 0.0)
        per_token = (x["logits"], x["targets"], x["old_logp"], x["advantages"], x["loss_mask"])
        out["srpo triton"] = lambda: grpo_loss(*per_token, config=cfg, temperature=temp, block_v=args.block_v)[0]
        if "torch" in want:
            out["srpo torch (chunked)"] = lambda: reference_grpo_loss(
                *per_token, config=cfg, temperature=temp, chunk_size=TORCH_TOKEN_CHUNK)[0]
        if "naive" in want:
            def naive():
                logp, entropy = _naive_logprobs(x["logits"], x["targets"], temp, ent)
                return grpo_loss_from_logprobs(logp, entropy, *per_token[2:], None, None, None, config=cfg)[0]

            out["naive torch"] = naive
    return out


def _naive_logprobs(logits, targets, temp, ent):
    log_probs = torch.log_softmax(logits.float() / temp, dim=-1)
    logp = log_probs.gather(-1, targets[:, None]).squeeze(-1)
    return logp, (-(log_probs.exp() * log_probs).sum(-1) if ent else None)


def _megatron_ce(x, temp) -> dict:
    try:
        from megatron.core.fusions.fused_cross_entropy import fused_vocab_parallel_cross_entropy
        from megatron.core.tensor_parallel.cross_entropy import vocab_parallel_cross_entropy
    except ImportError:
        print("megatron-core not importable: skipping its baselines")
        return {}
    group = _world_group()
    logits, targets = x["logits"], x["targets"]

    def prepared():
        # Megatron upcasts with .float(), a no-op for fp32 logits, then works in place: give it a copy then.
        # Temperature is applied outside (one more elementwise pass).
        if logits.dtype == torch.float32:
            return logits.clone() / temp if temp != 1.0 else logits.clone()
        return logits / temp if temp != 1.0 else logits

    if logits.dtype == torch.float32:
        print("megatron baselines: fp32 logits are copied first (Megatron's CE overwrites fp32 inputs)")
    # Megatron returns the per-token loss -logp.
    return {
        "megatron fused CE": lambda: fused_vocab_parallel_cross_entropy(prepared(), targets, group).sum(),
        "megatron CE": lambda: vocab_parallel_cross_entropy(prepared(), targets, tp_group=group).sum(),
    }


def _liger_ce(x, temp) -> dict:
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss
    except ImportError:
        print("liger-kernel not importable: skipping its baselines")
        return {}
    loss = LigerCrossEntropyLoss(reduction="sum")
    return {"liger CE": lambda: loss(x["logits"] / temp if temp != 1.0 else x["logits"], x["targets"])}


def _liger_flce(x, temp) -> dict:
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        print("liger-kernel not importable: skipping its baselines")
        return {}
    if temp != 1.0:
        print("liger fused linear CE has no temperature: timing it at temperature 1")
    loss = LigerFusedLinearCrossEntropyLoss(reduction="sum")
    return {"liger fused linear CE": lambda: loss(x["weight"], x["hidden"], x["targets"])}


def _world_group():
    """A one-rank default process group (Megatron's CE needs a group object even at TP1)."""
    import socket

    import torch.distributed as dist

    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    return dist.group.WORLD


def _no_grad(fn):
    with torch.no_grad():
        return fn()


def _fwd_bwd(fn, inputs):
    return torch.autograd.grad(fn(), inputs["grad_of"])


def _peak_extra_mib(fn) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _fill_rates(row: Row, kernel: str, args, shard: int, dtype, peak_bw, peak_flops) -> None:
    if kernel == "fused_linear_logprobs":
        row.unit = "TFLOP/s"
        work = (2 * args.n * args.h * shard, 6 * args.n * args.h * shard)
        scale, peak = 1e-12, peak_flops
    else:
        row.unit = "GB/s"
        logits_bytes = args.n * shard * torch.finfo(dtype).bits // 8
        work = (logits_bytes, 3 * logits_bytes)
        scale, peak = 1e-9, peak_bw
    for attr, ms, amount in (("fwd", row.fwd_ms, work[0]), ("fwd_bwd", row.fwd_bwd_ms, work[1])):
        if ms:
            rate = amount / (ms * 1e-3)
            setattr(row, f"{attr}_rate", rate * scale)
            if peak:
                setattr(row, f"{attr}_pct_roofline", 100 * rate / peak)


def _print_row(row: Row, first: bool) -> None:
    def cell(value, spec: str) -> str:
        width = spec.split(".")[0]
        return format(value, spec) if value is not None else format("-", f">{width}")

    if first:
        print(f"{'kernel':<22}{'impl':<24}{'fwd ms':>9}{'fwd+bwd ms':>12}{'unit':>9}{'fwd':>9}{'f+b':>9}"
              f"{'fwd %':>7}{'f+b %':>7}{'extra MiB':>11}  note")
    print(f"{row.kernel:<22}{row.impl:<24}{cell(row.fwd_ms, '9.3f')}{cell(row.fwd_bwd_ms, '12.3f')}"
          f"{row.unit:>9}{cell(row.fwd_rate, '9.1f')}{cell(row.fwd_bwd_rate, '9.1f')}"
          f"{cell(row.fwd_pct_roofline, '7.1f')}{cell(row.fwd_bwd_pct_roofline, '7.1f')}"
          f"{cell(row.peak_extra_mib, '11.0f')}  {row.note}")


def _write_json(path: str, payload: dict) -> None:
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
