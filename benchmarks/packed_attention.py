"""Packed (THD) attention + RoPE of the local (CPU) layer spec: per sample vs grouped, forward + backward.

    python -m benchmarks.packed_attention                       # table; 1 thread (a trainer rank on this machine)
    python -m benchmarks.packed_attention --threads 2 --json out.json
    python -m benchmarks.packed_attention --rows quickstart --heads 2x1x32

Times, for one layer on one packed row, the forward + backward (autograd, gradients of q, k, v) of

* RoPE on q and k through Megatron's unfused THD function (``rope_utils._apply_rotary_pos_emb_thd``), given the
  frequencies as Megatron's ``RotaryEmbedding`` gives them (``[longest sample, 1, 1, d]``: the per-sample loop) or as
  :class:`srpo_mcore.model.packed_rope.PackedRotaryEmbedding` gives them (one row per token: one rotation of the row);
* the core attention: :func:`per_sample_causal_attention` (one SDPA per sample, the previous implementation and the
  tests' reference) and :func:`packed_causal_attention` at several group fills (1.01: every sample alone but through
  the gather/scatter; 0.5: the default; 0: the whole row as one padded batch);
* the two together, before (per-sample RoPE + per-sample attention) and after (per-token RoPE + grouped attention).

Rows: ``quickstart`` (64 samples of 20-48 tokens, the quickstart's micro-batches), ``long-tail`` (a few long and many
short samples in 2048 tokens, as long-CoT rollouts pack), ``one-long`` (a 1900-token sample and a short one). Head
shapes are one TP rank's: (query heads, KV groups, head dim). Median of ``--repeats`` after 3 warm-ups, fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch

from srpo_mcore.model.packed_attention import (
    packed_causal_attention,
    packed_layout,
    per_sample_causal_attention,
)
from srpo_mcore.model.packed_rope import packed_positions

HEADS = [(2, 1, 32), (4, 2, 32), (4, 4, 64)]
FILLS = (1.01, 0.75, 0.5, 0.25, 0.0)


def rows(seed: int) -> dict[str, list[int]]:
    g = torch.Generator().manual_seed(seed)
    quickstart = torch.randint(20, 49, (64,), generator=g).tolist()
    return {
        "quickstart": quickstart,
        "long-tail": [900, 400, 210, 150, 96, 64, 48, 40, 33, 27, 20, 17, 12, 9, 7, 5, 3, 2, 1, 1],
        "one-long": [1900, 148],
    }


class _OneRank:
    """The context-parallel group Megatron's THD RoPE asks for: size 1."""

    def size(self) -> int:
        return 1

    def rank(self) -> int:
        return 0


def rope_freqs(longest: int, dim: int, base: float = 1e6) -> torch.Tensor:
    """``[longest, 1, 1, dim]`` as Megatron's ``RotaryEmbedding`` makes them (non-interleaved)."""
    inv_freq = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    freqs = torch.outer(torch.arange(longest, dtype=torch.float32), inv_freq)
    return torch.cat((freqs, freqs), dim=-1)[:, None, None, :]


def median_ms(fn: Callable[[], None], repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def measure(lengths: list[int], heads: int, groups: int, dim: int, repeats: int) -> dict[str, float]:
    from megatron.core.models.common.embeddings.rope_utils import _apply_rotary_pos_emb_thd

    boundaries = [0]
    for n in lengths:
        boundaries.append(boundaries[-1] + n)
    t = boundaries[-1]
    cu = torch.tensor(boundaries, dtype=torch.int32)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(t, heads, dim, generator=g).requires_grad_()
    k = torch.randn(t, groups, dim, generator=g).requires_grad_()
    v = torch.randn(t, groups, dim, generator=g).requires_grad_()
    grad_out = torch.randn(t, heads * dim, generator=g)
    scale = dim ** -0.5
    per_sample_freqs = rope_freqs(max(lengths), dim)
    per_token_freqs = per_sample_freqs.index_select(0, packed_positions(tuple(boundaries), torch.device("cpu")))
    cp = _OneRank()

    def rope(freqs):
        return (_apply_rotary_pos_emb_thd(q, cu, freqs, cp_group=cp), _apply_rotary_pos_emb_thd(k, cu, freqs, cp_group=cp))

    def run(make: Callable[[], torch.Tensor], grad: torch.Tensor | None = None) -> Callable[[], None]:
        def step():
            out = make()
            torch.autograd.backward(out, grad if grad is not None else [torch.ones_like(o) for o in out])
            q.grad = k.grad = v.grad = None
        return step

    def attention(fill: float | None, rq=q, rk=k):
        if fill is None:
            return per_sample_causal_attention(rq, rk, v, boundaries, scale=scale)
        return packed_causal_attention(rq, rk, v, boundaries, scale=scale, fill=fill)

    result = {
        "rope per-sample": median_ms(run(lambda: rope(per_sample_freqs)), repeats),
        "rope per-token": median_ms(run(lambda: rope(per_token_freqs)), repeats),
        "attention per-sample": median_ms(run(lambda: attention(None), grad_out), repeats),
    }
    for fill in FILLS:
        result[f"attention fill={fill}"] = median_ms(run(lambda fill=fill: attention(fill), grad_out), repeats)
    result["before: rope + attention per-sample"] = median_ms(
        run(lambda: attention(None, *rope(per_sample_freqs)), grad_out), repeats)
    result["after: rope per-token + attention grouped"] = median_ms(
        run(lambda: attention(0.5, *rope(per_token_freqs)), grad_out), repeats)
    packed_layout.cache_clear()
    start = time.perf_counter()
    packed_layout(tuple(boundaries), torch.device("cpu"))
    result["layout build (once per micro-batch)"] = 1e3 * (time.perf_counter() - start)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", default="quickstart,long-tail,one-long", help="comma-separated subset of the rows")
    p.add_argument("--heads", default=",".join(f"{h}x{g}x{d}" for h, g, d in HEADS),
                   help="comma-separated query-heads x KV-groups x head-dim shapes")
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    print(f"threads {args.threads}, repeats {args.repeats}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    results = []
    shapes = [tuple(int(x) for x in shape.split("x")) for shape in args.heads.split(",")]
    wanted = args.rows.split(",")
    for name, lengths in rows(args.seed).items():
        if name not in wanted:
            continue
        for heads, groups, dim in shapes:
            timings = measure(lengths, heads, groups, dim, args.repeats)
            shape = f"{name} ({len(lengths)} samples, {sum(lengths)} tok) h{heads} g{groups} d{dim}"
            print(f"\n{shape}")
            for label, ms in timings.items():
                print(f"  {label:<44}{ms:9.3f} ms")
            results.append({"row": name, "lengths": lengths, "heads": heads, "groups": groups, "dim": dim,
                            "ms": timings})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "repeats": args.repeats, "loadavg": load,
                       "loadavg_after": os.getloadavg(), "results": results}, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
