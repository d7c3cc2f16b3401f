"""Peak memory of one micro-batch's log-probs + GRPO loss forward/backward: fused LM head vs logits path.

    python benchmarks/lm_head_memory.py                      # Qwen2.5-0.5B head: hidden 896, vocab 151,936, 8k tokens
    python benchmarks/lm_head_memory.py --tokens 4096 --dtype float32 --json out.json

Only the LM head and the loss, through the trainer's own code (:class:`srpo_mcore.train.loss.TokenLoss`, the
``train.kernel_backend`` given, ``torch`` by default: the only one that runs at this size on CPU), TP1:

* ``logits``: Megatron's output layer (``hidden @ W.T`` on ``[s, b, h]``, then GPTModel's
  ``transpose(0, 1).contiguous()``), then the ``logprobs`` / ``grpo_loss`` ops on the ``[b, s, V]`` logits;
* ``fused``: the hidden states and ``W`` through ``fused_linear_logprobs`` + ``grpo_loss_from_logprobs``.

Each path runs what the trainer runs for a micro-batch: the no-grad log-prob pass (``compute_logprobs``), then the
loss forward and backward (``train_step``), from leaf hidden states standing in for the decoder's output. Each runs
in its own process; the figure is the peak resident set (``ru_maxrss``) minus the resident set just before the
pass, i.e. the extra memory the pass needed, including the weight gradient ``[V, h]`` both paths make.
(tracemalloc does not see torch's allocations.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

PATHS = ("logits", "fused")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(path: str, tokens: int, hidden: int, vocab: int, dtype: str, backend: str, rows: int) -> dict:
    """Run one path in this process; return its peak extra memory and the loss (call in a fresh process)."""
    import gc

    import torch
    from srpo_kernels.grpo_loss_reference import GRPOLossConfig

    from srpo_mcore.model.forward import LMHeadInput, MicroBatch
    from srpo_mcore.train.loss import TokenLoss

    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    seq = tokens // rows
    weight = (torch.randn(vocab, hidden) * 0.02).to(dt).requires_grad_()
    hidden_states = torch.randn(seq, rows, hidden).to(dt).requires_grad_()  # [s, b, h] as Megatron keeps them
    targets = torch.randint(0, vocab, (rows, seq))
    mask = (torch.rand(rows, seq) < 0.8).float()
    noise = 0.1 * torch.randn(rows, seq)
    extras = {"targets": targets, "loss_mask": mask, "advantages": torch.randn(rows, seq) * mask,
              "rollout_logprobs": torch.zeros(rows, seq)}
    mb = MicroBatch(torch.zeros(rows, seq, dtype=torch.long), extras)
    loss_path = TokenLoss(fused=path == "fused", backend=backend, loss_config=GRPOLossConfig(), vocab_size=vocab,
                          temperature=1.0)

    def head_output():
        if path == "fused":
            return LMHeadInput(hidden_states, weight, reduce_grad_input=True)
        return torch.nn.functional.linear(hidden_states, weight).transpose(0, 1).contiguous()

    gc.collect()
    before = _rss_bytes()
    start = time.perf_counter()
    with torch.no_grad():  # Policy.compute_logprobs
        old = loss_path.logprobs(head_output(), mb)
    extras["old_logprobs"] = (old + noise) * mask  # ratios off 1, as after a few updates
    loss, metrics = loss_path.loss(head_output(), mb, with_reference=False)  # Policy.train_step
    loss.backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"path": path, "peak_extra_bytes": peak - before, "rss_before_bytes": before, "seconds": seconds,
            "loss": loss.item(), "entropy": metrics["entropy"].item(),
            "weight_grad_bytes": weight.grad.numel() * weight.grad.element_size(),
            "logits_bytes": tokens * vocab * weight.element_size()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=8192, help="tokens in the micro-batch")
    ap.add_argument("--rows", type=int, default=8, help="sequences in the micro-batch ([rows, tokens / rows])")
    ap.add_argument("--hidden", type=int, default=896)
    ap.add_argument("--vocab", type=int, default=151_936)
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    ap.add_argument("--backend", default="torch", choices=("torch", "triton"))
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    shape = (args.tokens, args.hidden, args.vocab, args.dtype, args.backend, args.rows)
    if args.child:
        print(json.dumps(measure(args.child, *shape)))
        return 0
    results = []
    for path in args.paths:
        cmd = [sys.executable, __file__, "--child", path, "--tokens", str(args.tokens), "--rows", str(args.rows),
               "--hidden", str(args.hidden), "--vocab", str(args.vocab), "--dtype", args.dtype,
               "--backend", args.backend]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-4000:], file=sys.stderr)
            return proc.returncode
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    report = {"shape": {"tokens": args.tokens, "rows": args.rows, "hidden": args.hidden, "vocab": args.vocab,
                        "dtype": args.dtype, "backend": args.backend},
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
              "results": results}
    print(f"LM head + GRPO loss, one micro-batch: {args.tokens} tokens, hidden {args.hidden}, vocab {args.vocab}, "
          f"{args.dtype}, backend {args.backend}")
    for r in results:
        print(f"  {r['path']:<7} peak extra {r['peak_extra_bytes'] / 2**30:6.2f} GiB  {r['seconds']:7.1f} s  "
              f"loss {r['loss']:.6f}  (logits would be {r['logits_bytes'] / 2**30:.2f} GiB, "
              f"weight grad {r['weight_grad_bytes'] / 2**30:.2f} GiB)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
