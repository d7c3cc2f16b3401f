"""Benchmark ``srpo_kernels.logprobs`` (per-token log-probs + entropy of vocab-sharded logits) on a GPU.

    python -m benchmarks.kernels.logprobs --n 32768 --v 152064 --tp 8 --dtype bfloat16 [--entropy] [--json out.json]

Rate: GB/s over the logits, 1 pass forward and 3 forward + backward. Baselines: naive PyTorch
(``log_softmax`` + ``gather``), the op's PyTorch reference run in checkpointed token chunks (the torch backend,
``kernels/logprobs_reference.py``, which the tests check the kernel against), Megatron-Core's vocab-parallel
cross entropy (fused and unfused) and Liger-Kernel's cross entropy when importable. Cross-entropy baselines
compute ``-logp`` only (no entropy). See benchmarks/kernels/common.py for what is timed.
"""

from __future__ import annotations

import sys

import torch

from benchmarks.kernels import common
from benchmarks.kernels.common import Candidates, naive_logprobs, total

OP = "logprobs"
work = common.logits_traffic  # GB/s over the logits shard
BASELINES = ("naive", "torch", "megatron", "liger")


def make_inputs(args, dtype: torch.dtype, device: str = "cuda") -> dict:
    gen = torch.Generator(device=device).manual_seed(0)
    kw = {"device": device, "generator": gen}
    logits = (torch.randn(args.n, args.shard, dtype=dtype, **kw) * 2).requires_grad_(True)
    return {"logits": logits, "targets": torch.randint(0, args.shard, (args.n,), **kw), "grad_of": (logits,)}


def candidates(args, x: dict) -> Candidates:
    """name -> a closure returning the scalar whose gradient the forward + backward timing takes."""
    from srpo_kernels.backends import TORCH_TOKEN_CHUNK
    from srpo_kernels.logprobs import logprobs
    from srpo_kernels.logprobs_reference import reference_logprobs

    temp, ent = args.temperature, args.entropy
    out: Candidates = {"srpo triton": lambda: total(logprobs(
        x["logits"], x["targets"], temperature=temp, compute_entropy=ent, block_v=args.block_v), ent)}
    if "torch" in args.baselines:
        out["srpo torch (chunked)"] = lambda: total(reference_logprobs(
            x["logits"], x["targets"], temperature=temp, compute_entropy=ent, chunk_size=TORCH_TOKEN_CHUNK), ent)
    if "naive" in args.baselines:
        out["naive torch"] = lambda: total(naive_logprobs(x["logits"], x["targets"], temp, ent), ent)
    out.update(_megatron_ce(x, temp) if "megatron" in args.baselines else {})
    # last: Liger's cross entropy overwrites the logits with their gradient during its forward
    out.update(_liger_ce(x, temp) if "liger" in args.baselines else {})
    return out


def _megatron_ce(x, temp) -> Candidates:
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


def _liger_ce(x, temp) -> Candidates:
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss
    except ImportError:
        print("liger-kernel not importable: skipping its baselines")
        return {}
    loss = LigerCrossEntropyLoss(reduction="sum")
    return {"liger CE": lambda: loss(x["logits"] / temp if temp != 1.0 else x["logits"], x["targets"])}


def _world_group():
    """A one-rank default process group (Megatron's CE needs a group object even at TP1)."""
    import torch.distributed as dist

    from srpo_mcore.distributed import free_local_port

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_local_port()}", rank=0, world_size=1)
    return dist.group.WORLD


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
