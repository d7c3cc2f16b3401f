"""Benchmark ``srpo_kernels.grpo_loss`` (the token-level GRPO loss fused with the log-probs) on a GPU.

    python -m benchmarks.kernels.grpo_loss --n 32768 --v 152064 --tp 8 --dtype bfloat16 [--entropy] [--json out.json]

Rate: GB/s over the logits, 1 pass forward and 3 forward + backward. Baselines: the op's PyTorch reference in
checkpointed token chunks (the torch backend, ``kernels/grpo_loss_reference.py``, which the tests check the
kernel against) and naive PyTorch (``log_softmax`` + ``gather``, then the reference's loss from log-probs).
``--entropy`` adds an entropy bonus (coefficient 0.01). See benchmarks/kernels/common.py.
"""

from __future__ import annotations

import sys

import torch

from benchmarks.kernels import common
from benchmarks.kernels.common import Candidates, naive_logprobs

OP = "grpo_loss"
work = common.logits_traffic  # GB/s over the logits shard
BASELINES = ("naive", "torch")


def make_inputs(args, dtype: torch.dtype, device: str = "cuda") -> dict:
    gen = torch.Generator(device=device).manual_seed(0)
    n, kw = args.n, {"device": device, "generator": gen}
    logits = (torch.randn(n, args.shard, dtype=dtype, **kw) * 2).requires_grad_(True)
    return {"logits": logits, "targets": torch.randint(0, args.shard, (n,), **kw), "grad_of": (logits,),
            "old_logp": -torch.rand(n, **kw) * 5, "advantages": torch.randn(n, **kw),
            "loss_mask": torch.rand(n, **kw) < 0.8}


def candidates(args, x: dict) -> Candidates:
    """name -> a closure returning the loss whose gradient the forward + backward timing takes."""
    from srpo_kernels.backends import TORCH_TOKEN_CHUNK
    from srpo_kernels.grpo_loss import grpo_loss
    from srpo_kernels.grpo_loss_reference import GRPOLossConfig, grpo_loss_from_logprobs, reference_grpo_loss

    temp, ent = args.temperature, args.entropy
    cfg = GRPOLossConfig(entropy_coef=0.01 if ent else 0.0)
    per_token = (x["logits"], x["targets"], x["old_logp"], x["advantages"], x["loss_mask"])
    out: Candidates = {
        "srpo triton": lambda: grpo_loss(*per_token, config=cfg, temperature=temp, block_v=args.block_v)[0]}
    if "torch" in args.baselines:
        out["srpo torch (chunked)"] = lambda: reference_grpo_loss(
            *per_token, config=cfg, temperature=temp, chunk_size=TORCH_TOKEN_CHUNK)[0]
    if "naive" in args.baselines:
        def naive():
            logp, entropy = naive_logprobs(x["logits"], x["targets"], temp, ent)
            return grpo_loss_from_logprobs(logp, entropy, *per_token[2:], None, None, None, config=cfg)[0]

        out["naive torch"] = naive
    return out


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
