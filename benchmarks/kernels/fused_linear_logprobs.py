"""Benchmark ``srpo_kernels.fused_linear_logprobs`` (LM head + log-probs without materialising the logits) on a
GPU.

    python -m benchmarks.kernels.fused_linear_logprobs --n 32768 --v 152064 --tp 1 --h 5120 [--json out.json]

Rate: TFLOP/s, counting 2NHV forward and 6NHV forward + backward. Baselines: naive PyTorch (``hidden @ W.T``,
then ``log_softmax`` + ``gather``), the op's PyTorch reference in checkpointed token chunks (the torch backend,
``kernels/fused_linear_logprobs_reference.py``, which the tests check the kernel against) and Liger-Kernel's
fused linear cross entropy when importable (``-logp`` only, no temperature). See benchmarks/kernels/common.py.
"""

from __future__ import annotations

import math
import sys

import torch

from benchmarks.kernels import common
from benchmarks.kernels.common import Candidates, Work, naive_logprobs, total

OP = "fused_linear_logprobs"
BASELINES = ("naive", "torch", "liger")


def add_arguments(p) -> None:
    p.add_argument("--h", type=int, default=5120, help="hidden size")
    p.add_argument("--vocab-chunk", type=int, default=None, help="override the fused LM head's vocab chunk")


def make_inputs(args, dtype: torch.dtype, device: str = "cuda") -> dict:
    gen = torch.Generator(device=device).manual_seed(0)
    kw = {"device": device, "generator": gen}
    hidden = torch.randn(args.n, args.h, dtype=dtype, **kw).requires_grad_(True)
    weight = (torch.randn(args.shard, args.h, dtype=dtype, **kw) / math.sqrt(args.h)).requires_grad_(True)
    targets = torch.randint(0, args.shard, (args.n,), **kw)
    return {"hidden": hidden, "weight": weight, "targets": targets, "grad_of": (hidden, weight)}


def candidates(args, x: dict) -> Candidates:
    """name -> a closure returning the scalar whose gradient the forward + backward timing takes."""
    from srpo_kernels.backends import TORCH_TOKEN_CHUNK
    from srpo_kernels.fused_linear_logprobs import fused_linear_logprobs
    from srpo_kernels.fused_linear_logprobs_reference import reference_fused_linear_logprobs

    temp, ent = args.temperature, args.entropy
    inputs = (x["hidden"], x["weight"], x["targets"])
    out: Candidates = {"srpo triton": lambda: total(fused_linear_logprobs(
        *inputs, temperature=temp, compute_entropy=ent, vocab_chunk_size=args.vocab_chunk, block_v=args.block_v), ent)}
    if "torch" in args.baselines:
        out["srpo torch (chunked)"] = lambda: total(reference_fused_linear_logprobs(
            *inputs, temperature=temp, compute_entropy=ent, chunk_size=TORCH_TOKEN_CHUNK), ent)
    if "naive" in args.baselines:
        out["naive torch"] = lambda: total(naive_logprobs(x["hidden"] @ x["weight"].T, x["targets"], temp, ent), ent)
    out.update(_liger_flce(x, temp) if "liger" in args.baselines else {})
    return out


def work(args, dtype: torch.dtype) -> Work:
    flops = args.n * args.h * args.shard
    return Work("TFLOP/s", 2 * flops, 6 * flops)


def _liger_flce(x, temp) -> Candidates:
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        print("liger-kernel not importable: skipping its baselines")
        return {}
    if temp != 1.0:
        print("liger fused linear CE has no temperature: timing it at temperature 1")
    loss = LigerFusedLinearCrossEntropyLoss(reduction="sum")
    return {"liger fused linear CE": lambda: loss(x["weight"], x["hidden"], x["targets"])}


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
