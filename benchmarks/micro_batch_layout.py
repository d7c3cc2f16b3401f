"""Padded vs packed training micro-batches on a long-tailed length distribution, through the trainer's own code.

    python -m benchmarks.micro_batch_layout                       # TP2 on 2 ranks and TP2xPP2 on 4, both layouts
    python -m benchmarks.micro_batch_layout --samples 16 --max-response 2048 --json out.json

The rollout batch imitates long-CoT RL: ``--samples`` responses with log-normal lengths clipped to
``[100, --max-response]`` tokens after prompts of 50-300 tokens. Each (layout, parallel layout) runs in its own
``torchrun`` job on the tiny Qwen2 model (configs/models/tiny.yaml, fp32, fused LM head, torch kernels): the
micro-batch plan of the trainer (``plan_rank_micro_batches`` under ``--budget`` tokens), then ``Policy.compute_logprobs``
+ ``Policy.train_step`` on

* ``padded``: one sample per row, right-padded ``[b, s]`` (the trainer's layout before packing; every micro-batch of
  a rank at one shape under PP), tests/train/padded_layout.py;
* ``packed``: the trainer's layout, samples end to end in one row per micro-batch (train/batch.py).

Reported per job: processed tokens per real token, trainer time (log-probs + update, best of ``--repeats``) per
real token and real tokens/s, and the peak resident set of rank 0 (``ru_maxrss``; each job is a fresh process).
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
from pathlib import Path

LAYOUTS = ("padded", "packed")
PARALLEL = {"tp2": (2, 1, 2), "tp2pp2": (2, 2, 4)}  # name -> (TP, PP, ranks)
REPO_ROOT = Path(__file__).resolve().parents[1]


def rollout_lengths(samples: int, max_response: int, seed: int) -> list[tuple[int, int]]:
    """(prompt, response) token counts: prompts uniform in [50, 300], responses log-normal (median ~700) in
    [100, max_response]."""
    import torch

    g = torch.Generator().manual_seed(seed)
    prompts = torch.randint(50, 301, (samples,), generator=g)
    responses = torch.exp(torch.randn(samples, generator=g) * 1.0 + 6.55).clamp(100, max_response).long()
    return [(int(p), int(r)) for p, r in zip(prompts, responses)]


def worker(args: argparse.Namespace) -> None:
    """One torchrun job: build the policy, lay out the batch, time log-probs + update."""
    from srpo_mcore.platform import configure_process_environment

    configure_process_environment()
    import torch
    import torch.distributed as dist

    from srpo_mcore.config import load_config
    from srpo_mcore.distributed import init_model_parallel
    from srpo_mcore.model.forward import sequence_multiple
    from srpo_mcore.tasks.scoring import ScoredSample
    from srpo_mcore.train.batch import build_micro_batches, padding_fraction, plan_rank_micro_batches
    from srpo_mcore.train.policy import Policy
    from tests.train.padded_layout import build_padded_micro_batches

    tp, pp, _ = PARALLEL[args.parallel]
    longest = max(p + r for p, r in rollout_lengths(args.samples, args.max_response, args.seed))
    cfg = load_config(str(REPO_ROOT / "configs/models/tiny.yaml"), [
        f"parallel.tensor_model_parallel_size={tp}", f"parallel.pipeline_model_parallel_size={pp}",
        f"model.max_position_embeddings={longest + 1}", "train.kernel_backend=torch", "optimizer.clip_grad=0"])
    state = init_model_parallel(tp, pp, seed=1)
    policy = Policy(cfg, state)
    g = torch.Generator().manual_seed(args.seed + 1)
    samples = [ScoredSample(group=i, prompt_id=str(i), domain="math",
                            prompt_ids=torch.randint(3, 200, (p,), generator=g).tolist(),
                            response_ids=torch.randint(3, 200, (r,), generator=g, dtype=torch.int32),
                            rollout_logprobs=-torch.rand(r, generator=g), finish_reason="stop",
                            advantage=float(torch.randn(1, generator=g)))
               for i, (p, r) in enumerate(rollout_lengths(args.samples, args.max_response, args.seed))]
    index_lists = plan_rank_micro_batches(samples, dp_rank=state.dp_rank, dp_size=state.dp_size,
                                          token_budget=args.budget)
    build = build_micro_batches if args.layout == "packed" else build_padded_micro_batches
    layout = dict(pad_id=0, uniform_shape=pp > 1, seq_multiple=sequence_multiple(cfg.parallel))
    real = sum(samples[i].length - 1 for idx in index_lists for i in idx)
    processed = sum(mb.input_ids.numel() for mb in build(samples, index_lists, **layout))
    tokens = float(sum(len(s.response_ids) for s in samples))
    best = float("inf")
    for _ in range(args.repeats):
        micro = build(samples, index_lists, **layout)
        dist.barrier()
        start = time.perf_counter()
        policy.compute_logprobs(micro)
        policy.train_step(micro, global_tokens=tokens, global_sequences=float(len(samples)))
        dist.barrier()
        best = min(best, time.perf_counter() - start)
    if args.layout == "packed":
        assert padding_fraction(micro) == (processed - real, processed)
    totals = torch.tensor([real, processed], dtype=torch.float64)
    dist.all_reduce(totals)  # every model-parallel rank counts its pipeline's rows: the ratio is unaffected
    if dist.get_rank() == 0:
        result = {"layout": args.layout, "parallel": args.parallel, "samples": args.samples,
                  "micro_batches_per_rank": len(index_lists), "real_tokens": int(real),
                  "processed_per_real": float(totals[1] / totals[0]), "padding_fraction": 1 - float(totals[0] / totals[1]),
                  "seconds": best, "real_tokens_per_s": real * state.dp_size / best,
                  "us_per_real_token": best / (real * state.dp_size) * 1e6,
                  "rank0_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30}
        Path(args.out).write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def run_job(args: argparse.Namespace, layout: str, parallel: str, out: Path) -> dict:
    from srpo_mcore.distributed import free_local_port

    nproc = PARALLEL[parallel][2]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={free_local_port()}", "-m", "benchmarks.micro_batch_layout",
           "--worker", "--layout", layout, "--parallel", parallel, "--samples", str(args.samples),
           "--max-response", str(args.max_response), "--budget", str(args.budget), "--repeats", str(args.repeats),
           "--seed", str(args.seed), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: {layout} {parallel} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.micro_batch_layout", description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--max-response", type=int, default=8192)
    ap.add_argument("--budget", type=int, default=16384, help="train.max_tokens_per_micro_batch")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parallel", nargs="+", default=list(PARALLEL), choices=list(PARALLEL))
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--layout", choices=LAYOUTS, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        args.parallel = args.parallel[0]
        worker(args)
        return 0
    import tempfile

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for parallel in args.parallel:
            for layout in LAYOUTS:
                print(f"{parallel} {layout} ...", flush=True)
                results.append(run_job(args, layout, parallel, Path(tmp) / f"{parallel}_{layout}.json"))
                print(json.dumps(results[-1]), flush=True)
    header = f"{'parallel':<8} {'layout':<7} {'processed/real':>14} {'padding':>8} {'s':>7} {'real tok/s':>11} " \
             f"{'us/real tok':>11} {'rank0 peak GiB':>14}"
    print(header)
    for r in results:
        print(f"{r['parallel']:<8} {r['layout']:<7} {r['processed_per_real']:>14.3f} {r['padding_fraction']:>8.1%} "
              f"{r['seconds']:>7.2f} {r['real_tokens_per_s']:>11.0f} {r['us_per_real_token']:>11.1f} "
              f"{r['rank0_peak_rss_gib']:>14.2f}")
    for parallel in args.parallel:
        padded, packed = (next(r for r in results if r["parallel"] == parallel and r["layout"] == lay) for lay in LAYOUTS)
        print(f"{parallel}: packed is {packed['real_tokens_per_s'] / padded['real_tokens_per_s']:.2f}x the padded "
              f"layout's real tokens/s")
    if args.json:
        meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
                "args": {k: v for k, v in vars(args).items() if k not in ("worker", "layout", "out")}}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
