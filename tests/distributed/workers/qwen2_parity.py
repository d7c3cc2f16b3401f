"""Rank code for tests/distributed/test_qwen2_parity.py (4 ranks, gloo).

One launch walks through the layouts TP1 (DP4), TP2 (DP2) and TP2xPP2 (DP1) and checks, against logits that
HF transformers computed for the same random weights:
  * logits parity at each layout, and a wrong-QKV-layout negative control at TP2;
  * a distributed checkpoint saved at TP2xPP2 and loaded at TP1xPP1, and an HF export from TP2xPP2;
  * a few AdamW steps with Megatron DDP at TP2 reduce a fixed-batch loss.
Rank 0 writes the findings to --out as JSON; the pytest side asserts on them.
"""

import argparse
import json

import torch
import torch.distributed as dist

from srpo_mcore.platform import configure_process_environment

configure_process_environment()

from srpo_mcore.config import load_config  # noqa: E402
from srpo_mcore.distributed import init_model_parallel  # noqa: E402
from srpo_mcore.model.forward import MicroBatch, forward_backward  # noqa: E402
from srpo_mcore.model.hf_checkpoint import load_hf_into_model, save_hf_checkpoint  # noqa: E402
from srpo_mcore.model.mcore_checkpoint import load_model_checkpoint, save_model_checkpoint  # noqa: E402
from srpo_mcore.model.qwen2 import build_model  # noqa: E402
from srpo_mcore.train.optim import build_optimizer, wrap_ddp  # noqa: E402


def gathered_logits(model, state, input_ids):
    """Full-vocab logits [b, s, padded_vocab] on every rank of the last stage (None elsewhere)."""
    captured = {}

    def capture(logits, mb):
        shards = [torch.empty_like(logits) for _ in range(state.tp_size)]
        dist.all_gather(shards, logits.contiguous(), group=state.tp_group)
        captured["logits"] = torch.cat(shards, dim=-1).detach()
        return logits.sum() * 0, torch.tensor(1), {}

    with torch.no_grad():
        forward_backward(model, [MicroBatch(input_ids, {})], capture, forward_only=True)
    return captured.get("logits")


def make(cfg_overrides, tp, pp, seed=1):
    cfg = load_config("configs/models/tiny.yaml", [f"parallel.tensor_model_parallel_size={tp}",
                                                   f"parallel.pipeline_model_parallel_size={pp}", *cfg_overrides])
    state = init_model_parallel(tp, pp, seed)
    model = build_model(cfg.model, cfg.parallel, pre_process=state.is_first_stage, post_process=state.is_last_stage)
    return cfg, state, model


def compare(name, logits, ref, vocab, results, state):
    if logits is None or state.tp_rank != 0 or state.dp_rank != 0:
        return
    diff = (logits[..., :vocab] - ref).abs().max().item()
    same_argmax = bool((logits[..., :vocab].argmax(-1) == ref.argmax(-1)).all())
    results[name] = {"max_abs_diff": diff, "argmax_equal": same_argmax, "rank": state.rank,
                     "padded_cols_max_abs": logits[..., vocab:].abs().max().item()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    ref = torch.load(f"{args.hf}/reference_logits.pt")
    input_ids = ref["input_ids"]
    ref_logits = ref["logits"]
    local: dict = {}

    # 1. Logits parity at three layouts.
    for tp, pp in [(1, 1), (2, 1), (2, 2)]:
        cfg, state, model = make([], tp, pp)
        load_hf_into_model(model, cfg.model, args.hf, state.tp_rank, state.tp_size)
        logits = gathered_logits(model, state, input_ids)
        compare(f"tp{tp}pp{pp}", logits, ref_logits, cfg.model.vocab_size, local, state)
        if (tp, pp) == (2, 1):
            # Negative control: fuse QKV as a plain cat(q, k, v) instead of Megatron's per-group order.
            from safetensors.torch import load_file

            hf = load_file(f"{args.hf}/model.safetensors")
            with torch.no_grad():
                for i, layer in enumerate(model.decoder.layers):
                    p = f"model.layers.{i}.self_attn."
                    wrong = torch.cat([hf[p + "q_proj.weight"], hf[p + "k_proj.weight"], hf[p + "v_proj.weight"]])
                    layer.self_attention.linear_qkv.weight.copy_(wrong.chunk(tp)[state.tp_rank])
            compare("tp2pp1_wrong_qkv", gathered_logits(model, state, input_ids), ref_logits,
                    cfg.model.vocab_size, local, state)
        if (tp, pp) == (2, 2):
            # 2. Save a distributed checkpoint and an HF export from TP2xPP2.
            save_model_checkpoint(model, cfg.model, f"{args.work}/mcore_tp2pp2")
            save_hf_checkpoint(model, cfg.model, f"{args.work}/hf_export", dtype="float32", tp_group=state.tp_group,
                               tp_size=state.tp_size, tp_rank=state.tp_rank, dp_rank=state.dp_rank)

    # 3. Load the TP2xPP2 checkpoint at TP1xPP1 into a model with different random init.
    cfg, state, model = make([], 1, 1, seed=7)
    load_model_checkpoint(model, f"{args.work}/mcore_tp2pp2")
    compare("tp1pp1_from_tp2pp2_ckpt", gathered_logits(model, state, input_ids), ref_logits, cfg.model.vocab_size,
            local, state)

    # 3b. Tied embeddings under PP: the last stage's output layer is a copy of the first stage's embedding.
    cfg, state, model = make(["model.tie_word_embeddings=true"], 2, 2)
    load_hf_into_model(model, cfg.model, args.hf, state.tp_rank, state.tp_size)
    logits = gathered_logits(model, state, input_ids)
    if logits is not None and state.tp_rank == 0 and state.dp_rank == 0:
        local["tp2pp2_tied_finite"] = bool(torch.isfinite(logits).all())

    # 4. A few AdamW steps at TP2 (DP2) on a fixed batch reduce its loss.
    cfg, state, model = make(["optimizer.lr=3e-3", "optimizer.weight_decay=0.0"], 2, 1)
    load_hf_into_model(model, cfg.model, args.hf, state.tp_rank, state.tp_size)
    ddp = wrap_ddp(model, cfg.parallel)
    optimizer = build_optimizer(ddp, cfg.optimizer, cfg.parallel, torch.float32)
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    batch = input_ids[:, :-1].contiguous()
    labels = input_ids[:, 1:].contiguous()

    def ce_loss(logits, mb):
        loss = vocab_parallel_cross_entropy(logits.float(), labels).sum()
        return loss, torch.tensor(labels.numel()), {"loss_sum": loss.detach(), "tokens": labels.numel()}

    losses = []
    for _ in range(6):
        ddp.zero_grad_buffer()
        optimizer.zero_grad()
        out = forward_backward(ddp, [MicroBatch(batch, {})], ce_loss, forward_only=False)
        ok, grad_norm, _ = optimizer.step()
        if out:
            losses.append(float(out[0]["loss_sum"]) / out[0]["tokens"])
    if state.rank == 0:
        local["train_losses"] = losses

    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    if dist.get_rank() == 0:
        merged = {}
        for part in gathered:
            merged.update(part)
        with open(args.out, "w") as f:
            json.dump(merged, f, indent=2)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
