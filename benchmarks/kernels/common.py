"""What the per-op kernel benchmarks share: arguments, GPU rooflines, the timing loop, the table and the JSON.

TP is simulated on one GPU: every kernel gets one rank's shard (``ceil(V / TP)`` vocab columns) and no process
group, so collectives (a few ``O(N)`` all-gathers / all-reduces) are not timed. Per implementation it prints the
median time of the forward (under ``no_grad``, as when computing old/reference log-probs) and of forward +
backward, the achieved rate and its % of the detected GPU's roofline, and the peak memory allocated beyond the
inputs during forward + backward (which includes the gradients it returns).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import ModuleType

import torch

from srpo_mcore.config.model import DTYPES
from srpo_mcore.model.dtypes import torch_dtype

# Datasheet peaks: (HBM bandwidth in bytes/s, dense bf16 tensor-core FLOP/s).
GPU_PEAKS: dict[str, tuple[float, float]] = {
    "H100 SXM": (3.35e12, 989e12),
    "H100 NVL": (3.9e12, 835e12),
    "H100 PCIe": (2.0e12, 756e12),
    "H200": (4.8e12, 989e12),
}

Candidates = dict[str, Callable[[], torch.Tensor]]


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


@dataclass(frozen=True)
class Work:
    """How much one forward and one forward + backward move or compute, in ``unit`` x ``1 / scale``."""

    unit: str  # "GB/s" (memory-bound: rated against HBM bandwidth) or "TFLOP/s" (against bf16 FLOP/s)
    fwd: float
    fwd_bwd: float

    @property
    def scale(self) -> float:
        return 1e-12 if self.unit == "TFLOP/s" else 1e-9


def logits_traffic(args: argparse.Namespace, dtype: torch.dtype) -> Work:
    """The memory-bound log-prob ops: the logits shard is read once forward, 3 times forward + backward."""
    logits_bytes = args.n * args.shard * torch.finfo(dtype).bits // 8
    return Work("GB/s", logits_bytes, 3 * logits_bytes)


def parse_args(bench: ModuleType, argv: list[str] | None) -> argparse.Namespace:
    """The command line of one op's benchmark module (``OP``, ``BASELINES``, optional ``add_arguments``)."""
    op, baselines = bench.OP, bench.BASELINES
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.kernels.{op}",
                                description=bench.__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=32768, help="tokens")
    p.add_argument("--v", type=int, default=152064, help="full (padded) vocabulary size")
    p.add_argument("--tp", type=int, default=8, help="simulated TP size: the kernel sees V/TP vocab columns")
    p.add_argument("--dtype", choices=DTYPES, default="bfloat16")
    p.add_argument("--entropy", action="store_true", help="also compute the entropy (and its gradient)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--block-v", type=int, default=None, help="override the Triton vocab tile (tuning)")
    p.add_argument("--baselines", default=",".join(baselines), help=f"comma-separated subset of {baselines}")
    p.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON")
    if hasattr(bench, "add_arguments"):
        bench.add_arguments(p)
    args = p.parse_args(argv)
    args.baselines = {b for b in args.baselines.split(",") if b}
    if unknown := args.baselines - set(baselines):
        p.error(f"unknown baselines {sorted(unknown)}; choose from {baselines}")
    args.shard = -(-args.v // args.tp)
    return args


def main(bench: ModuleType, argv: list[str] | None = None) -> int:
    """Time every candidate of one op's benchmark module (its ``make_inputs``, ``candidates`` and ``work``) on
    the GPU, print the table, write the JSON; 1 without CUDA."""
    args = parse_args(bench, argv)
    op = bench.OP
    if not torch.cuda.is_available():
        print(f"{op}: no CUDA device; this benchmark times GPU kernels. The CPU correctness checks are "
              f"`pytest tests/kernels` (Triton interpreter against the fp64 references).", file=sys.stderr)
        return 1
    from triton.testing import do_bench

    device_name = torch.cuda.get_device_name()
    gpu = detect_gpu(device_name)
    peak_bw, peak_flops = GPU_PEAKS.get(gpu, (None, None))
    dtype = torch_dtype(args.dtype)
    amount = bench.work(args, dtype)
    peak = peak_flops if amount.unit == "TFLOP/s" else peak_bw
    print(f"device: {device_name} -> roofline {gpu or 'unknown (no % column)'}; dtype {args.dtype}; "
          f"N={args.n} V={args.v} TP={args.tp} (shard V/TP={args.shard}); entropy={args.entropy}")
    inputs = bench.make_inputs(args, dtype, device="cuda")
    rows: list[Row] = []
    for impl, fn in bench.candidates(args, inputs).items():
        row = Row(op, impl, unit=amount.unit)
        try:
            row.fwd_ms = do_bench(lambda fn=fn: no_grad(fn), warmup=5, rep=50, return_mode="median")
            row.fwd_bwd_ms = do_bench(lambda fn=fn: fwd_bwd(fn, inputs), warmup=5, rep=50, return_mode="median")
            row.peak_extra_mib = _peak_extra_mib(lambda fn=fn: fwd_bwd(fn, inputs))
        except torch.cuda.OutOfMemoryError:
            row.note = "out of memory"
            torch.cuda.empty_cache()
        _fill_rates(row, amount, peak)
        rows.append(row)
        _print_row(row, first=len(rows) == 1)
    if args.json:
        payload = {"device": device_name, "roofline": gpu, "kernel": op,
                   "args": {**vars(args), "baselines": sorted(args.baselines)}, "rows": [asdict(r) for r in rows]}
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2, default=str)
        print(f"wrote {args.json}")
    return 0


def total(result: tuple[torch.Tensor, torch.Tensor | None], entropy: bool) -> torch.Tensor:
    """The scalar a (logp, entropy) op's forward + backward timing differentiates."""
    return result[0].sum() + (result[1].sum() if entropy else 0.0)


def naive_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float, entropy: bool):
    """The plain PyTorch baseline: fp32 ``log_softmax`` of the whole shard, then ``gather``."""
    log_probs = torch.log_softmax(logits.float() / temperature, dim=-1)
    logp = log_probs.gather(-1, targets[:, None]).squeeze(-1)
    return logp, (-(log_probs.exp() * log_probs).sum(-1) if entropy else None)


def no_grad(fn: Callable[[], torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return fn()


def fwd_bwd(fn: Callable[[], torch.Tensor], inputs: dict) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(fn(), inputs["grad_of"])


def _peak_extra_mib(fn) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _fill_rates(row: Row, work: Work, peak: float | None) -> None:
    for attr, ms, amount in (("fwd", row.fwd_ms, work.fwd), ("fwd_bwd", row.fwd_bwd_ms, work.fwd_bwd)):
        if ms:
            rate = amount / (ms * 1e-3)
            setattr(row, f"{attr}_rate", rate * work.scale)
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
