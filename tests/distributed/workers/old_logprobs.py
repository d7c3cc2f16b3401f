"""Rank code for tests/distributed/test_old_logprobs.py (2 ranks, gloo).

The real Policy on the shared tiny Qwen2 model, one SRPO update from the same samples and weights through both
sources of the PPO old log-probs (``train.old_logprobs``): ``recompute`` (``compute_old_logprobs``, a separate
forward-only pass, then ``train_step``) and ``auto`` (``train_step(old_from_forward=True)``: the training forward's
own log-probs, detached), at TP1 (DP2), TP2 (DP1) and PP2 (DP1), through the fused LM head and the logits path, with
TIS and, in one case, a KL reference. Each rank compares the loss metrics, the stale-weight guard's statistics
(``MismatchGuard.update`` over WORLD on the guard input each path yields), every parameter's gradient and the
updated weights; a negative control perturbs the recomputed old log-probs by 0.05 nats (ratio != 1).
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
from srpo_mcore.model.forward import sequence_multiple  # noqa: E402
from srpo_mcore.rollout.guard import MismatchGuard  # noqa: E402
from srpo_mcore.train.batch import build_micro_batches, plan_rank_micro_batches  # noqa: E402
from srpo_mcore.train.policy import Policy  # noqa: E402
from tests.distributed.workers.qwen2_parity import rollout_samples  # noqa: E402  (rollout log-probs replaced below)

# name -> (TP, PP, loss path, config overrides)
CASES = {
    "tp1_fused": (1, 1, "fused", ["algorithm.tis_cap=1.2"]),
    "tp1_logits": (1, 1, "logits", ["algorithm.tis_cap=1.2", "algorithm.dual_clip_c=3.0"]),
    "tp2_fused": (2, 1, "fused", ["algorithm.tis_cap=1.2", "algorithm.loss_aggregation=seq-mean-token-mean"]),
    "tp2_logits": (2, 1, "logits", ["algorithm.tis_cap=1.2"]),
    "tp2_fused_kl": (2, 1, "fused", ["algorithm.kl_coef=0.05", "algorithm.entropy_coef=0.01"]),
    "pp2_fused": (1, 2, "fused", ["algorithm.tis_cap=1.2"]),
}


def one_update(hf_dir, tp, pp, path, overrides, mode, old_noise=0.0):
    cfg = load_config("configs/models/tiny.yaml", [
        f"parallel.tensor_model_parallel_size={tp}", f"parallel.pipeline_model_parallel_size={pp}",
        f"train.fused_lm_head={path == 'fused'}", "train.kernel_backend=torch", "optimizer.clip_grad=0",
        "optimizer.lr=1e-3", "rollout.temperature=0.8", f"train.old_logprobs={mode}", *overrides])
    state = init_model_parallel(tp, pp, seed=1)
    policy = Policy(cfg, state)
    policy.load_initial_weights(hf_dir, policy=True)
    samples = rollout_samples()
    index_lists = plan_rank_micro_batches(samples, dp_rank=state.dp_rank, dp_size=state.dp_size, token_budget=40)
    micro = build_micro_batches(samples, index_lists, pad_id=0, uniform_shape=pp > 1,
                                seq_multiple=sequence_multiple(cfg.parallel))
    # rollout log-probs = the trainer's + N(0, 0.3^2) (a fixed draw per rank): realistic guard deltas, and TIS
    # weights exp(old - rollout) on both sides of the cap
    noise = torch.Generator().manual_seed(5 + dist.get_rank())
    policy.compute_old_logprobs(micro)
    for mb in micro:
        if "old_logprobs" in mb.extras:
            mask = mb.extras["loss_mask"].bool()
            mb.extras["rollout_logprobs"][mask] = (mb.extras.pop("old_logprobs")[mask]
                                                   + 0.3 * torch.randn(int(mask.sum()), generator=noise))
    policy.compute_reference_logprobs(micro)
    kwargs = {"global_tokens": float(sum(len(s.response_ids) for s in samples)),
              "global_sequences": float(len(samples))}
    if mode == "recompute":
        pair = policy.compute_old_logprobs(micro)
        for mb in micro:
            if "old_logprobs" in mb.extras:
                mb.extras["old_logprobs"][mb.extras["loss_mask"].bool()] += old_noise
        metrics = policy.train_step(micro, **kwargs)
    else:
        metrics = policy.train_step(micro, **kwargs, old_from_forward=True)
        pair = policy.guard_logprobs(micro)
    guard = MismatchGuard(10.0, 1e-3).update(*pair, group=dist.group.WORLD)
    params = dict(policy.ddp.module.named_parameters())
    return {"metrics": metrics, "guard": [guard.mean_abs, guard.max_abs, guard.frac_ratio_outside, guard.tokens],
            "trainer_logprobs": pair[1], "grads": {n: p.main_grad.detach().clone() for n, p in params.items()},
            "weights": {n: p.detach().clone() for n, p in params.items()}}


def compare(a, b):
    """Max differences on this rank (gradients relative to each parameter's largest)."""
    return {
        "metrics": max(abs(a["metrics"][k] - b["metrics"][k]) for k in a["metrics"]),
        "metric_keys": sorted(a["metrics"]) if a["metrics"].keys() == b["metrics"].keys() else None,
        "guard": max(abs(x - y) for x, y in zip(a["guard"], b["guard"])),
        "guard_stats": a["guard"],
        "trainer_logprobs": ((a["trainer_logprobs"] - b["trainer_logprobs"]).abs().max().item()
                             if a["trainer_logprobs"].numel() else 0.0),
        "grad_rel": max(((b["grads"][n] - g).abs().max() / g.abs().max().clamp(min=1e-30)).item()
                        for n, g in a["grads"].items()),
        "weights": max((b["weights"][n] - w).abs().max().item() for n, w in a["weights"].items()),
        "zero_grads": sorted(n for n, g in a["grads"].items() if not g.abs().max() > 0),
        "tokens": int(a["trainer_logprobs"].numel()),
        "approx_kl": a["metrics"]["loss/approx_kl"],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    findings = {}
    for name, (tp, pp, path, overrides) in CASES.items():
        recompute = one_update(args.hf, tp, pp, path, overrides, "recompute")
        auto = one_update(args.hf, tp, pp, path, overrides, "auto")
        shifted = one_update(args.hf, tp, pp, path, overrides, "recompute", old_noise=0.05)
        for key, (a, b) in {name: (recompute, auto), f"{name}/old_shifted": (recompute, shifted)}.items():
            per_rank = [None] * dist.get_world_size()
            dist.all_gather_object(per_rank, compare(a, b))
            findings[key] = per_rank
    if dist.get_rank() == 0:
        with open(args.out, "w") as f:
            json.dump(findings, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
