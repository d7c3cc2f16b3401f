"""Rank code for tests/distributed/test_resume_layouts.py (4 ranks, gloo).

One launch:
  1. TP2 (DP2): a Policy from the tiny HF weights takes two AdamW updates; a History Resampling sampler draws a batch;
     the trainer's CheckpointManager saves model, optimizer, RNG and trainer state (sampler, LR schedule). The
     saved weights and Adam moments are gathered to full tensors, then one more update from fixed micro-batches
     gives the reference weights.
  2. TP1 (DP4) and TP2xPP2 (DP1): a fresh Policy (other random init) loads that checkpoint; its weights, Adam
     moments and step, gathered to full tensors, are compared with the saved ones; the sampler and LR schedule are
     restored; the same update from the same samples is compared with the reference.
  3. A Policy with the distributed optimizer at TP1 is refused that checkpoint, the error naming both layouts.
  4. bf16 params (fp32 main params in the optimizer): the same save at TP2 and load at TP1, comparing the bf16
     weights and the optimizer's fp32 main params and moments, and the fp32 main params after one more update
     (bf16 numerics: compared on average).
Rank 0 writes the findings to --out as JSON; the pytest side asserts on them.
"""

import argparse
import json
from pathlib import Path

import torch
import torch.distributed as dist

from srpo_mcore.platform import configure_process_environment

configure_process_environment()

from srpo_mcore.algorithm.sampling import GroupOutcome, build_prompt_sampler  # noqa: E402
from srpo_mcore.config import load_config  # noqa: E402
from srpo_mcore.distributed import init_model_parallel  # noqa: E402
from srpo_mcore.model.forward import sequence_multiple  # noqa: E402
from srpo_mcore.tasks.scoring import ScoredSample  # noqa: E402
from srpo_mcore.train.batch import build_micro_batches, plan_rank_micro_batches  # noqa: E402
from srpo_mcore.train.checkpoint import CheckpointManager  # noqa: E402
from srpo_mcore.train.policy import Policy  # noqa: E402

LAYOUTS = {"tp1pp1": (1, 1), "tp2pp2": (2, 2)}


def policy_at(tp, pp, seed, *overrides):
    cfg = load_config("configs/models/tiny.yaml", [
        f"parallel.tensor_model_parallel_size={tp}", f"parallel.pipeline_model_parallel_size={pp}",
        "optimizer.lr=1e-3", "optimizer.weight_decay=0.01", "train.steps=8", *overrides])
    state = init_model_parallel(tp, pp, seed)
    return cfg, state, Policy(cfg, state)


def samples(seed, n=8):
    """Fixed synthetic rollouts (the same on every rank): 2 groups of 4, advantages of both signs."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        prompt = torch.randint(3, 200, (int(torch.randint(3, 7, (1,), generator=g)),), generator=g).tolist()
        response = torch.randint(3, 200, (int(torch.randint(2, 10, (1,), generator=g)),), generator=g).tolist()
        out.append(ScoredSample(group=i // 4, prompt_id=str(i), domain="math", prompt_ids=prompt,
                                response_ids=response, rollout_logprobs=[-4.0] * len(response),
                                finish_reason="stop", advantage=float(torch.randn(1, generator=g))))
    return out


def update(cfg, state, policy, batch):
    index_lists = plan_rank_micro_batches(batch, dp_rank=state.dp_rank, dp_size=state.dp_size, token_budget=64)
    micro = build_micro_batches(batch, index_lists, pad_id=0, uniform_shape=state.pp_size > 1, device=state.device,
                                seq_multiple=sequence_multiple(cfg.parallel))
    policy.compute_logprobs(micro)
    return policy.train_step(micro, global_tokens=float(sum(len(s.response_ids) for s in batch)),
                             global_sequences=float(len(batch)))


def full_tensors(sharded: dict) -> dict[str, torch.Tensor]:
    """Every ShardedTensor of a Megatron sharded state dict, assembled from all ranks' pieces into its global
    tensor (same dict on every rank). Layout-independent: the keys and global shapes are the checkpoint's."""
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, apply_factories

    apply_factories(sharded)
    pieces = []
    for st in nested_values(sharded):
        if isinstance(st, ShardedTensor) and st.data is not None:
            assert st.flattened_range is None, st.key
            p = st.prepend_axis_num
            index = [(o, 1) for o in st.global_offset[:p]] + list(zip(st.global_offset[p:], st.local_shape))
            pieces.append((st.key, tuple(st.global_shape), index, st.data.detach().float().clone()))
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, pieces)
    full: dict[str, torch.Tensor] = {}
    covered: dict[str, torch.Tensor] = {}
    for rank_pieces in gathered:
        for key, shape, index, data in rank_pieces:
            if key not in full:
                full[key] = torch.zeros(shape)
                covered[key] = torch.zeros(shape, dtype=torch.bool)
            where = tuple(slice(o, o + n) for o, n in index)
            full[key][where] = data.reshape([n for _, n in index])
            covered[key][where] = True
    missing = [k for k, c in covered.items() if not c.all()]
    assert not missing, f"pieces do not cover {missing}"
    return full


def model_and_moments(policy) -> tuple[dict, dict]:
    model_sd = policy.chunk.sharded_state_dict()
    weights = full_tensors(model_sd)
    optim = full_tensors(policy.optimizer.sharded_state_dict(policy.chunk.sharded_state_dict()))
    return weights, optim


def adam_steps(policy) -> list[float]:
    inner = getattr(policy.optimizer, "chained_optimizers", [policy.optimizer])
    return sorted({float(s["step"]) for o in inner for s in o.optimizer.state.values()})


def compare(a: dict, b: dict) -> dict:
    return {"keys_equal": sorted(a) == sorted(b),
            "max_abs_diff": max((a[k] - b[k]).abs().max().item() for k in a if k in b),
            "bit_equal": all(k in b and torch.equal(a[k], b[k]) for k in a), "tensors": len(a)}


def history_sampler(cfg):
    sampling = load_config(None, ["sampling.strategy=history_resampling"]).sampling
    return build_prompt_sampler(sampling, list(range(12)), seed=5, keys=[f"k{i}" for i in range(12)],
                                labels=[f"p{i}" for i in range(12)])


def draw(sampler, per_step=4) -> list[int]:
    batch = sampler.begin_batch(per_step)
    drawn = []
    while ids := batch.next_request():
        drawn += ids
        batch.add([GroupOutcome(i, (1.0, float(i % 3 == 0)), (True, i % 3 == 0)) for i in ids])
    return drawn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    found: dict = {}
    batch_a, batch_b = samples(1), samples(2)

    # 1. TP2 (DP2): train, save, remember, one more update.
    cfg, state, policy = policy_at(2, 1, 1)
    policy.load_initial_weights(args.hf, policy=True)
    update(cfg, state, policy, batch_a)
    update(cfg, state, policy, samples(3))
    sampler = history_sampler(cfg)
    draw(sampler)
    draw(sampler)
    manager = CheckpointManager(Path(args.work) / "run", keep_last=2)
    trainer_state = {"samplers": {"math": sampler.state_dict()}, "lr_scheduler": policy.lr_scheduler.state_dict()}
    path = manager.save(2, policy.chunk, policy.optimizer, trainer_state)
    saved_weights, saved_optim = model_and_moments(policy)
    found["saved"] = {"adam_steps": adam_steps(policy), "weights": len(saved_weights), "optim": len(saved_optim),
                      "moments_max_abs": max(v.abs().max().item() for k, v in saved_optim.items()),
                      "optim_keys": sorted({k.split(".")[2] for k in saved_optim}),
                      "lr_next": policy.optimizer.param_groups[0]["lr"]}
    next_draw = draw(sampler)
    update(cfg, state, policy, batch_b)
    reference = full_tensors(policy.chunk.sharded_state_dict())
    found["update_moved_weights_max_abs"] = max((reference[k] - saved_weights[k]).abs().max().item()
                                                 for k in reference)

    # 2. Resume at other layouts (a different random init first, so that nothing passes by accident).
    for name, (tp, pp) in LAYOUTS.items():
        cfg, state, policy = policy_at(tp, pp, 7)
        fresh_weights = full_tensors(policy.chunk.sharded_state_dict())
        resumed = manager.load(path, policy.chunk, policy.optimizer)
        policy.lr_scheduler.load_state_dict(resumed.trainer_state["lr_scheduler"])
        restored = history_sampler(cfg)
        restored.load_state_dict(resumed.trainer_state["samplers"]["math"])
        weights, optim = model_and_moments(policy)
        result = {"weights": compare(saved_weights, weights), "optim": compare(saved_optim, optim),
                  "fresh_init_max_abs_diff": compare(saved_weights, fresh_weights)["max_abs_diff"],
                  "adam_steps": adam_steps(policy), "lr_next": policy.optimizer.param_groups[0]["lr"],
                  "sampler_state_equal": restored.state_dict() == trainer_state["samplers"]["math"],
                  "sampler_next_draw_equal": draw(restored) == next_draw}
        update(cfg, state, policy, batch_b)
        result["update"] = compare(reference, full_tensors(policy.chunk.sharded_state_dict()))
        found[name] = result

    # 3. The distributed optimizer does not reshard: refused before any tensor is read.
    cfg, state, policy = policy_at(1, 1, 7, "parallel.use_distributed_optimizer=true")
    try:
        manager.load(path, policy.chunk, policy.optimizer)
        found["distributed_optimizer_refusal"] = ""
    except RuntimeError as err:
        found["distributed_optimizer_refusal"] = str(err)

    # 4. bf16 params: the optimizer's fp32 main params and moments reshard too.
    bf16 = "model.params_dtype=bfloat16"
    cfg, state, policy = policy_at(2, 1, 1, bf16)
    policy.load_initial_weights(args.hf, policy=True)
    # The optimizer's fp32 main params start from the loaded weights (not from the random init they were built with).
    found["bf16_main_params_vs_loaded_max_abs"] = max(
        (p.main_param - p.float()).abs().max().item() for p in policy.chunk.parameters() if p.requires_grad)
    update(cfg, state, policy, batch_a)
    update(cfg, state, policy, samples(3))
    bf16_manager = CheckpointManager(Path(args.work) / "run_bf16", keep_last=2)
    bf16_path = bf16_manager.save(2, policy.chunk, policy.optimizer, {})
    saved_weights, saved_optim = model_and_moments(policy)
    update(cfg, state, policy, batch_b)
    reference = full_tensors(policy.optimizer.sharded_state_dict(policy.chunk.sharded_state_dict()))
    cfg, state, policy = policy_at(1, 1, 7, bf16)
    bf16_manager.load(bf16_path, policy.chunk, policy.optimizer)
    weights, optim = model_and_moments(policy)
    found["bf16_tp1pp1"] = {
        "weights": compare(saved_weights, weights), "optim": compare(saved_optim, optim),
        "optim_keys": sorted({k.split(".")[2] for k in saved_optim}), "adam_steps": adam_steps(policy),
        "weight_dtypes": sorted({str(p.dtype) for p in policy.chunk.parameters()})}
    update(cfg, state, policy, batch_b)
    after = full_tensors(policy.optimizer.sharded_state_dict(policy.chunk.sharded_state_dict()))
    # bf16 forward/backward at TP1 vs TP2 round differently, and Adam turns the gradients of tiny-gradient elements
    # into steps of ~lr either way: compare the update's typical size, not its largest element.
    main = [k for k in reference if ".fp32_param." in k]
    moved = torch.cat([(reference[k] - saved_optim[k]).flatten() for k in main])
    diff = torch.cat([(reference[k] - after[k]).flatten() for k in main])
    found["bf16_tp1pp1"]["update_fp32_main_params"] = {
        "tensors": len(main), "max_abs_diff": diff.abs().max().item(), "mean_abs_diff": diff.abs().mean().item(),
        "mean_abs_update": moved.abs().mean().item()}

    if dist.get_rank() == 0:
        Path(args.out).write_text(json.dumps(found, indent=1))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
