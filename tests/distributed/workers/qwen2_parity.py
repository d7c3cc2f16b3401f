"""Rank code for tests/distributed/test_qwen2_parity.py (4 ranks, gloo).

One launch walks through the layouts TP1 (DP4), TP2 (DP2) and TP2xPP2 (DP1) and checks, against logits that
HF transformers computed for the same random weights:
  * logits parity at each layout, and a wrong-QKV-layout negative control at TP2;
  * a distributed checkpoint saved at TP2xPP2 and loaded at TP1xPP1, and an HF export from TP2xPP2;
  * a few AdamW steps with Megatron DDP at TP2 reduce a fixed-batch loss;
  * sequence parallelism (local spec) at TP2 and TP2xPP2: logits parity, log-probs of odd-length sequences (padded
    to a multiple of TP), an odd micro-batch length refused, and one SRPO train step (Policy, odd-length samples
    padded by the micro-batch builder) equal to the same step without SP; a negative control drops the TP
    all-reduce of the norm weights' gradients.
  * packed micro-batches (the trainer's layout: samples end to end in one row, attention and rotary positions per
    sample) equal one sample per padded row through Megatron's own attention, in log-probs, loss metrics, every
    gradient and the updated weights, at TP1, TP2, TP2xPP2 and TP2 with sequence parallelism; a negative control
    drops the sample boundaries;
  * the trainer's loss path (train/policy.py): the fused LM head (hidden states + output weight through
    fused_linear_logprobs, torch and Triton-interpreter backends) equals the logits path in log-probs, loss
    metrics, every parameter's gradient and the updated weights, at TP1, TP2, TP2xPP2 (with a KL reference),
    and with tied embeddings at TP2xPP2 and TP1; plus a negative control (no TP reduction of the hidden-state
    gradient).
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
from srpo_mcore.model.forward import MicroBatch, forward_backward, sequence_multiple  # noqa: E402
from srpo_mcore.model.hf_checkpoint import load_hf_into_model, save_hf_checkpoint  # noqa: E402
from srpo_mcore.model.mcore_checkpoint import load_model_checkpoint, save_model_checkpoint  # noqa: E402
from srpo_mcore.model.qwen2 import build_model  # noqa: E402
from srpo_mcore.tasks.scoring import ScoredSample  # noqa: E402
from srpo_mcore.train.batch import build_micro_batches, plan_rank_micro_batches  # noqa: E402
from srpo_mcore.train.optim import build_optimizer, wrap_ddp  # noqa: E402
from srpo_mcore.train.policy import Policy  # noqa: E402
from tests.rollout.megatron_logprobs import megatron_logprobs  # noqa: E402
from tests.train.padded_layout import build_padded_micro_batches  # noqa: E402

SP = "parallel.sequence_parallel=true"


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


def srpo_train_step(hf, overrides, tamper=None):
    """One SRPO update at TP2 (DP2) through Policy on four odd-length samples: (metrics, this rank's gradients as the
    optimizer received them: summed over DP and, for SP's norm weights, over TP; micro-batch shapes)."""
    cfg = load_config("configs/models/tiny.yaml", ["parallel.tensor_model_parallel_size=2", *overrides])
    state = init_model_parallel(2, 1, 1)
    policy = Policy(cfg, state)
    policy.load_initial_weights(hf, policy=True)
    if tamper is not None:
        tamper(policy.chunk)
    g = torch.Generator().manual_seed(0)
    samples = [ScoredSample(group=i // 2, prompt_id=str(i), domain="math",
                            prompt_ids=torch.randint(3, 200, (p,), generator=g).tolist(),
                            response_ids=torch.randint(3, 200, (r,), generator=g).tolist(),
                            rollout_logprobs=[-5.0] * r, finish_reason="stop", advantage=0.5 * (-1.0) ** i)
               for i, (p, r) in enumerate([(3, 5), (4, 5), (2, 8), (5, 2)])]  # input lengths 7, 8, 9, 6
    index_lists = plan_rank_micro_batches(samples, dp_rank=state.dp_rank, dp_size=state.dp_size, token_budget=64)
    mbs = build_micro_batches(samples, index_lists, pad_id=0, uniform_shape=False, device=state.device,
                              seq_multiple=sequence_multiple(cfg.parallel))
    policy.compute_logprobs(mbs)
    metrics = policy.train_step(mbs, global_tokens=20.0, global_sequences=4.0)
    grads = {name: p.main_grad.detach().clone() for name, p in policy.chunk.named_parameters()}
    return metrics, grads, [mb.shape for mb in mbs]


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def sequence_parallel_checks(args, ref, local):
    """Section 5 (sequence parallelism); findings under ``sp_*`` keys."""
    input_ids, ref_logits = ref["input_ids"], ref["logits"]
    for tp, pp in [(2, 1), (2, 2)]:
        cfg, state, model = make([SP], tp, pp)
        load_hf_into_model(model, cfg.model, args.hf, state.tp_rank, state.tp_size)
        compare(f"sp_tp{tp}pp{pp}", gathered_logits(model, state, input_ids), ref_logits, cfg.model.vocab_size,
                local, state)
        # Odd lengths 11 and 9: megatron_logprobs pads them to a multiple of TP; HF's log-probs are the reference.
        lengths = (11, 9)
        lps = megatron_logprobs(model, state, [input_ids[i, :n].tolist() for i, n in enumerate(lengths)],
                                vocab_size=cfg.model.vocab_size)
        hf_lp = torch.log_softmax(ref_logits.double(), dim=-1)
        diff = max((lp.double() - hf_lp[i, :n - 1].gather(-1, input_ids[i, 1:n, None]).squeeze(-1)).abs().max().item()
                   for i, (lp, n) in enumerate(zip(lps, lengths)))
        if state.rank == 0:
            local[f"sp_tp{tp}pp{pp}_odd_logprobs_max_abs_diff"] = diff
        if pp == 1:
            try:
                forward_backward(model, [MicroBatch(input_ids[:, :11].contiguous(), {})],
                                 lambda logits, mb: (logits.sum() * 0, torch.tensor(1), {}), forward_only=True)
                refused = ""
            except ValueError as err:
                refused = str(err)
            if state.rank == 0:
                local["sp_odd_length_refused"] = refused

    base_metrics, base_grads, base_shapes = srpo_train_step(args.hf, [])
    sp_metrics, sp_grads, sp_shapes = srpo_train_step(args.hf, [SP])

    def drop_norm_grad_reduction(chunk):
        for name, p in chunk.named_parameters():
            if "layernorm" in name:
                p.sequence_parallel = False

    _, bad_grads, _ = srpo_train_step(args.hf, [SP], tamper=drop_norm_grad_reduction)
    diffs = torch.tensor([max_diff(base_grads, sp_grads), max_diff(base_grads, bad_grads),
                          max_diff(base_grads, {k: v * 0 for k, v in base_grads.items()})], dtype=torch.float64)
    dist.all_reduce(diffs, op=dist.ReduceOp.MAX)
    if state.rank == 0:
        local["sp_train_step"] = {
            "grad_max_abs_diff": diffs[0].item(), "no_norm_grad_reduction_grad_max_abs_diff": diffs[1].item(),
            "grad_max_abs": diffs[2].item(),
            "metrics": {k: [base_metrics[k], sp_metrics[k]] for k in base_metrics if k.startswith("loss/")},
            "shapes": {"tp": [list(s) for s in base_shapes], "sp": [list(s) for s in sp_shapes]},
        }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", choices=["loss_path", "packing"], help="run section 6 or 7 alone (debugging)")
    args = ap.parse_args()
    ref = torch.load(f"{args.hf}/reference_logits.pt")
    input_ids = ref["input_ids"]
    ref_logits = ref["logits"]
    local: dict = {}
    if args.only:
        {"loss_path": loss_path_parity, "packing": packing_parity}[args.only](args.hf, local)
        return finish(local, args.out)

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

    # 5. Sequence parallelism.
    sequence_parallel_checks(args, ref, local)

    # 6. The trainer's loss path: fused LM head vs logits, one Policy per path from the same HF weights.
    loss_path_parity(args.hf, local)

    # 7. Packed micro-batches (the trainer's layout) vs one sample per padded row.
    packing_parity(args.hf, local)
    finish(local, args.out)


def finish(local, out_path):
    # Process groups still alive after ~20 Megatron initialisations (each layout re-initialises): one layout's
    # worth when init_model_parallel frees the previous one's (gloo groups hold threads and sockets)
    local[f"live_process_groups_rank{dist.get_rank()}"] = len(dist.distributed_c10d._world.pg_map)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    if dist.get_rank() == 0:
        merged = {}
        for part in gathered:
            merged.update(part)
        with open(out_path, "w") as f:
            json.dump(merged, f, indent=2)
    dist.barrier()
    dist.destroy_process_group()


# ------------------------------------------------------------------------------------------ loss-path parity
# name -> (TP, PP, config overrides, paths run besides the logits path); "fused" is the torch backend.
LOSS_PATH_LAYOUTS = {
    "tp1pp1": (1, 1, ["algorithm.tis_cap=2.0"], ["fused", "fused_triton"]),
    "tp2pp1": (2, 1, ["algorithm.loss_aggregation=seq-mean-token-mean"], ["fused", "fused_triton", "fused_no_tp_reduce"]),
    "tp2pp2_kl": (2, 2, ["algorithm.kl_coef=0.05"], ["fused"]),
    "tp2pp2_tied": (2, 2, ["model.tie_word_embeddings=true"], ["fused", "fused_triton"]),
    "tp1pp1_tied": (1, 1, ["model.tie_word_embeddings=true"], ["fused"]),
}


def rollout_samples(n=8, seed=3):
    """Fixed synthetic rollouts (same on every rank): random prompts/responses, advantages of both signs."""
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(n):
        prompt = torch.randint(1, 200, (int(torch.randint(3, 7, (1,), generator=g)),), generator=g).tolist()
        response = torch.randint(1, 200, (int(torch.randint(2, 12, (1,), generator=g)),), generator=g)
        samples.append(ScoredSample(group=i // 4, prompt_id=str(i), domain="math", prompt_ids=prompt,
                                    response_ids=response, finish_reason="stop",
                                    rollout_logprobs=-torch.rand(len(response), generator=g) * 3,
                                    advantage=float(torch.randn(1, generator=g))))
    return samples


def run_policy(hf_dir, tp, pp, overrides, path, layout="packed"):
    """compute_logprobs + one train_step of a fresh Policy; what the parity compares (last stage only). ``layout``:
    the trainer's packed micro-batches, or the padded one-sample-per-row reference (tests/train/padded_layout.py)."""
    import srpo_mcore.model.forward as forward

    backend = "triton" if path == "fused_triton" else "torch"
    cfg = load_config("configs/models/tiny.yaml", [
        f"parallel.tensor_model_parallel_size={tp}", f"parallel.pipeline_model_parallel_size={pp}",
        f"train.fused_lm_head={path != 'logits'}", f"train.kernel_backend={backend}", "optimizer.clip_grad=0",
        "optimizer.lr=1e-3", "rollout.temperature=0.8", *overrides])
    state = init_model_parallel(tp, pp, seed=1)
    policy = Policy(cfg, state)
    policy.load_initial_weights(hf_dir, policy=True)
    head_calls = []  # Megatron's output layer must not run on the fused path (no [tokens, V/TP] logits)
    if state.is_last_stage:
        policy.chunk.output_layer.register_forward_hook(lambda *_: head_calls.append(1))
    samples = rollout_samples()
    index_lists = plan_rank_micro_batches(samples, dp_rank=state.dp_rank, dp_size=state.dp_size, token_budget=40)
    build = build_padded_micro_batches if layout == "padded" else build_micro_batches
    micro = build(samples, index_lists, pad_id=0, uniform_shape=pp > 1, seq_multiple=sequence_multiple(cfg.parallel))
    if layout == "packed_without_boundaries":  # negative control: one segment per row, attention across samples
        for mb in micro:
            mb.cu_seqlens = torch.tensor([0, mb.shape[1]], dtype=torch.int32)
    original = forward.lm_head_input
    if path == "fused_no_tp_reduce":  # negative control: nobody sums the TP ranks' partial hidden-state grads
        forward.lm_head_input = lambda **kw: forward.LMHeadInput(**{**vars(original(**kw)),
                                                                   "reduce_grad_input": False})
    try:
        _, trainer_lp = policy.compute_logprobs(micro)
        noise = torch.Generator().manual_seed(11)
        for mb in micro:  # old log-probs off the current ones, so that ratios clip both ways (the same noise on
            if "old_logprobs" in mb.extras:  # each response token whatever the layout: tokens come in sample order)
                mask = mb.extras["loss_mask"].bool()
                mb.extras["old_logprobs"][mask] += 0.3 * torch.randn(int(mask.sum()), generator=noise)
        metrics = policy.train_step(micro, global_tokens=float(sum(len(s.response_ids) for s in samples)),
                                    global_sequences=float(len(samples)))
    finally:
        forward.lm_head_input = original
    params = dict(policy.ddp.module.named_parameters())
    ref = [mb.extras["ref_logprobs"][mb.extras["loss_mask"].bool()] if "ref_logprobs" in mb.extras else None
           for mb in micro]  # the reference model's log-probs of the response tokens, in sample order
    return {"logprobs": trainer_lp, "ref": ref, "metrics": metrics,
            "grads": {n: p.main_grad.detach().clone() for n, p in params.items()},
            "weights": {n: p.detach().clone() for n, p in params.items()}, "output_layer_calls": len(head_calls)}


def compare_runs(ref, other):
    """Max abs differences (gradients relative to each parameter's largest gradient) on this rank."""
    grad_rel, worst = 0.0, ""
    for name, g in ref["grads"].items():
        rel = ((other["grads"][name] - g).abs().max() / g.abs().max().clamp(min=1e-30)).item()
        if rel >= grad_rel:
            grad_rel, worst = rel, name
    refs = [(a, b) for a, b in zip(ref["ref"], other["ref"]) if a is not None]
    return {
        "logprobs": (ref["logprobs"] - other["logprobs"]).abs().max().item() if ref["logprobs"].numel() else 0.0,
        "ref_logprobs": max([(a - b).abs().max().item() for a, b in refs], default=0.0),
        "metrics": max(abs(ref["metrics"][k] - other["metrics"][k]) for k in ref["metrics"]),
        "grad_rel": grad_rel, "worst_grad": worst,
        "weights": max((other["weights"][n] - w).abs().max().item() for n, w in ref["weights"].items()),
        "zero_grads": sorted(n for n, g in ref["grads"].items() if not g.abs().max() > 0),
        "n_params": len(ref["grads"]), "output_layer_calls": (ref["output_layer_calls"], other["output_layer_calls"]), "tokens": int(ref["logprobs"].numel()),
        "has_ref": bool(refs), "metric_keys": sorted(ref["metrics"]),
        "loss": ref["metrics"]["loss/policy"], "clip_low": ref["metrics"]["loss/clip_frac_low"],
        "clip_high": ref["metrics"]["loss/clip_frac_high"],
    }


def loss_path_parity(hf_dir, local):
    out = {}
    for name, (tp, pp, overrides, paths) in LOSS_PATH_LAYOUTS.items():
        ref = run_policy(hf_dir, tp, pp, overrides, "logits")
        for path in paths:
            found = compare_runs(ref, run_policy(hf_dir, tp, pp, overrides, path))
            per_rank = [None] * dist.get_world_size()
            dist.all_gather_object(per_rank, found)
            out[f"{name}/{path}"] = per_rank
    if dist.get_rank() == 0:
        local["loss_path"] = out



# ------------------------------------------------------------------------------- packed vs padded micro-batches
# name -> (TP, PP, config overrides): the trainer's packed rows against one sample per padded row (Megatron's own
# core attention), fused LM head, torch backend
PACKING_LAYOUTS = {
    "tp1pp1": (1, 1, ["algorithm.tis_cap=2.0"]),
    "tp2pp1": (2, 1, ["algorithm.loss_aggregation=seq-mean-token-mean"]),
    "tp2pp2": (2, 2, ["algorithm.kl_coef=0.05"]),
    "sp_tp2pp1": (2, 1, [SP]),
}


def packing_parity(hf_dir, local):
    out = {}
    for name, (tp, pp, overrides) in PACKING_LAYOUTS.items():
        ref = run_policy(hf_dir, tp, pp, overrides, "fused", layout="padded")
        found = compare_runs(ref, run_policy(hf_dir, tp, pp, overrides, "fused", layout="packed"))
        per_rank = [None] * dist.get_world_size()
        dist.all_gather_object(per_rank, found)
        out[name] = per_rank
    found = compare_runs(run_policy(hf_dir, 1, 1, [], "fused", layout="padded"),
                         run_policy(hf_dir, 1, 1, [], "fused", layout="packed_without_boundaries"))
    per_rank = [None] * dist.get_world_size()
    dist.all_gather_object(per_rank, found)
    out["tp1pp1_without_boundaries"] = per_rank
    if dist.get_rank() == 0:
        local["packing"] = out


if __name__ == "__main__":
    main()
