"""Pretrain the quickstart model from scratch on synthetic arithmetic, with Megatron-Core on CPU ranks.

    torchrun --nproc_per_node=2 -m srpo_mcore.quickstart.pretrain --config configs/quickstart.yaml \\
        --out runs/quickstart/base --steps 600

Trains next-token prediction on the well-formed responses of both domains of
:mod:`srpo_mcore.quickstart.arithmetic` (``--code-fraction`` of them code; the model section of the config sets the
architecture, TP/PP come from its parallel section), reports held-out greedy accuracy per domain, and writes an
HF checkpoint plus the character tokenizer that vLLM and the SRPO trainer start from. Deliberately short: the
model should know both answer formats but get only part of the sums right, leaving room for RL. Rank 0's console
shows this script's lines; Megatron's notices and the rest are in ``OUT/logs/rankNNNNN.log``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from srpo_mcore.job import setup_logging
from srpo_mcore.platform import configure_process_environment

logger = logging.getLogger("srpo_mcore.quickstart.pretrain")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--out", required=True, help="HF checkpoint directory to write")
    ap.add_argument("--tp", type=int, help="tensor-parallel size (default: the config's). make quickstart and the "
                    "tests pretrain at TP2: this tiny model learns sums in a sudden transition whose step moves with "
                    "floating-point reduction order (a data-parallel run of the same 400 steps, same data, ended at "
                    "31%% held-out greedy accuracy instead of 77%%)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--eval-problems", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-operand", type=int, default=99, help="operands are drawn from [0, max_operand]")
    ap.add_argument("--heldout-seed", type=int, default=999, help="seed of the held-out problems (excluded)")
    ap.add_argument("--warmup", type=int, default=50, help="warm-up steps of the learning rate")
    ap.add_argument("--code-fraction", type=float, default=0.2, help="share of code-domain examples")
    return ap.parse_args(argv)


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def make_batch(tokenizer, problems, pad_id: int, bos_id: int, eos_id: int):
    """Right-padded ``(input_ids, labels)``; labels are ``pad_id`` (ignored) on prompt and padding positions, so
    the loss covers only the response (the prompt's digits are random and unpredictable)."""
    from srpo_mcore.quickstart.arithmetic import solution_text

    prompts = [[bos_id] + encode(tokenizer, p.prompt) for p in problems]
    seqs = [pr + encode(tokenizer, solution_text(p)) + [eos_id] for pr, p in zip(prompts, problems)]
    length = max(map(len, seqs))
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    for i, (s, pr) in enumerate(zip(seqs, prompts)):
        ids[i, : len(s)] = torch.tensor(s)
        labels[i, len(pr) - 1 : len(s) - 1] = torch.tensor(s[len(pr):])
    return ids[:, :-1].contiguous(), labels[:, :-1].contiguous()


@torch.no_grad()
def greedy_accuracy(model, state, tokenizer, problems, bos_id, eos_id, max_new: int = 28) -> float:
    """Greedy-decode each problem with the Megatron model (full recompute per token; tiny model); the share of
    responses that are exactly the well-formed solution."""
    from srpo_mcore.model.forward import MicroBatch, forward_backward
    from srpo_mcore.quickstart.arithmetic import is_solved

    prompts = [[bos_id] + encode(tokenizer, p.prompt) for p in problems]
    outputs = [list(p) for p in prompts]
    done = [False] * len(prompts)
    for _ in range(max_new):
        length = max(map(len, outputs))
        ids = torch.zeros((len(outputs), length), dtype=torch.long)
        for i, s in enumerate(outputs):
            ids[i, : len(s)] = torch.tensor(s)
        last = torch.tensor([len(s) - 1 for s in outputs])
        picked: dict[str, torch.Tensor] = {}

        def pick(logits, mb, last=last, picked=picked):
            shards = [torch.empty_like(logits) for _ in range(state.tp_size)]
            dist.all_gather(shards, logits.contiguous(), group=state.tp_group)
            full = torch.cat(shards, dim=-1)[..., : model.config_vocab_size]
            rows = torch.arange(len(outputs), device=logits.device)
            picked["next"] = full[rows, last.to(logits.device)].argmax(-1)
            return logits.sum() * 0, torch.tensor(1, device=logits.device), {}

        forward_backward(model, [MicroBatch(ids, {}).to(state.device)], pick, forward_only=True)
        for i, token in enumerate(picked["next"].tolist()):
            if not done[i]:
                outputs[i].append(token)
                done[i] = token == eos_id
        if all(done):
            break
    correct = 0
    for p, prompt, out in zip(problems, prompts, outputs):
        correct += is_solved(p, tokenizer.decode(out[len(prompt):], skip_special_tokens=True))
    return correct / len(problems)


def main(argv=None) -> int:
    args = parse_args(argv)
    configure_process_environment()
    # rank 0's console: this script's lines; Megatron's notices and everything else: OUT/logs/rankNNNNN.log
    setup_logging(Path(args.out) / "logs", int(os.environ.get("RANK", 0)))
    from transformers import AutoTokenizer

    from srpo_mcore.config import load_config
    from srpo_mcore.distributed import init_model_parallel
    from srpo_mcore.model.forward import MicroBatch, forward_backward
    from srpo_mcore.model.hf_checkpoint import save_hf_checkpoint
    from srpo_mcore.model.qwen2 import build_model
    from srpo_mcore.quickstart.arithmetic import build_tokenizer, make_problems, vocab_size
    from srpo_mcore.train.optim import build_optimizer, wrap_ddp

    layout = [f"parallel.tensor_model_parallel_size={args.tp}"] if args.tp else []
    cfg = load_config(args.config, [f"optimizer.lr={args.lr}", "optimizer.weight_decay=0.0", *layout])
    if cfg.model.vocab_size != vocab_size():
        raise SystemExit(f"error: {args.config}: model.vocab_size={cfg.model.vocab_size} but the arithmetic "
                         f"tokenizer has {vocab_size()} tokens")
    state = init_model_parallel(cfg.parallel.tensor_model_parallel_size, cfg.parallel.pipeline_model_parallel_size,
                                seed=args.seed)
    out = Path(args.out)
    if state.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        build_tokenizer(out)
    dist.barrier()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    pad_id, bos_id, eos_id = tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id

    torch.manual_seed(args.seed)
    model = build_model(cfg.model, cfg.parallel, pre_process=state.is_first_stage, post_process=state.is_last_stage)
    model.config_vocab_size = cfg.model.vocab_size
    ddp = wrap_ddp(model, cfg.parallel)
    optimizer = build_optimizer(ddp, cfg.optimizer, cfg.parallel, torch.float32)
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    if not 0.0 <= args.code_fraction < 1.0:
        raise SystemExit(f"error: --code-fraction must be in [0, 1), got {args.code_fraction}")
    held_out = {d: make_problems(args.eval_problems, args.heldout_seed, args.max_operand, prefix="eval", domain=d)
                for d in ("math", "code")}
    held_out_sums = {p.expression for p in held_out["math"]}
    pools = {d: [p for p in make_problems(9000, args.seed + 1, args.max_operand, domain=d)
                 if p.expression not in held_out_sums] for d in ("math", "code")}
    if args.batch_size % state.dp_size:
        raise SystemExit(f"error: --batch-size {args.batch_size} is not divisible by the {state.dp_size} data-parallel "
                         "ranks")
    # One stream of examples for the whole job, each data-parallel rank training on its slice: the data (and so the
    # model, up to floating-point reordering) do not depend on the TP/DP layout.
    rng = torch.Generator().manual_seed(args.seed)

    def ce_loss(logits, mb):
        labels = mb.extras["labels"]
        mask = (labels != pad_id).float()
        # Exclude Megatron's padded vocab rows: they must never receive probability mass.
        vocab_start = state.tp_rank * logits.shape[-1]
        padded = torch.arange(vocab_start, vocab_start + logits.shape[-1], device=logits.device) >= cfg.model.vocab_size
        logits = logits.float().masked_fill(padded, float("-inf"))
        per_token = vocab_parallel_cross_entropy(logits, labels)
        loss = (per_token * mask).sum()
        return loss, mask.sum().to(torch.int), {"loss": loss.detach(), "tokens": mask.sum()}

    start = time.time()
    for step in range(1, args.steps + 1):
        n_code = round(args.batch_size * args.code_fraction)
        picked = [pools[d][i] for d, n in (("math", args.batch_size - n_code), ("code", n_code))
                  for i in torch.randint(len(pools[d]), (n,), generator=rng).tolist()][state.dp_rank::state.dp_size]
        ids, labels = make_batch(tokenizer, picked, pad_id, bos_id, eos_id)
        batch = MicroBatch(ids, {"labels": labels}).to(state.device)
        for group in optimizer.param_groups:  # linear warm-up, then cosine decay to 10%
            group["lr"] = args.lr * min(step / args.warmup, 0.1 + 0.45 * (1 + math.cos(math.pi * step / args.steps)))
        ddp.zero_grad_buffer()
        optimizer.zero_grad()
        metrics = forward_backward(ddp, [batch], ce_loss, forward_only=False)
        optimizer.step()
        if step % 50 == 0 or step == args.steps:
            loss = float(metrics[0]["loss"] / metrics[0]["tokens"]) if metrics else float("nan")
            if state.rank == 0:
                logger.info("step %d/%d  loss %.4f  (%.1f s)", step, args.steps, loss, time.time() - start)
    accuracy = {d: greedy_accuracy(model, state, tokenizer, held_out[d], bos_id, eos_id) for d in held_out}
    save_hf_checkpoint(model, cfg.model, out, dtype="float32", tp_group=state.tp_group, tp_size=state.tp_size,
                       tp_rank=state.tp_rank, dp_rank=state.dp_rank)
    if state.rank == 0:
        summary = {"steps": args.steps, "code_fraction": args.code_fraction,
                   "held_out_greedy_accuracy": accuracy, "seconds": time.time() - start}
        (out / "pretrain_summary.json").write_text(json.dumps(summary, indent=2))
        logger.info("held-out greedy accuracy: math %.3f, code %.3f; wrote %s", accuracy["math"], accuracy["code"],
                    out)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
