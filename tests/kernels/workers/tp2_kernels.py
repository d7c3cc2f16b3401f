"""Rank code for tests/kernels/test_tp2.py (2 ranks, gloo, CPU; Triton kernels in the interpreter).

Every rank builds the same full-vocabulary problem (96 padded columns, 90 real: the padding sits on rank 1),
takes its vocab shard, runs the vocab-parallel ops over the TP group with both backends, and compares with
the single-rank fp64 reference on the full vocabulary: log-probs, entropy, the loss and metrics, and the
gradients of its own shard (and of the replicated hidden states). Targets fall on both shards, on a padded
column and on ``ignore_index``. Errors are reduced with MAX over ranks; rank 0 writes them to --out as JSON.
"""

import argparse
import json

import torch
import torch.distributed as dist

from srpo_mcore.platform import configure_process_environment

configure_process_environment()

from srpo_kernels.fused_linear_logprobs import fused_linear_logprobs  # noqa: E402
from srpo_kernels.fused_linear_logprobs_reference import reference_fused_linear_logprobs  # noqa: E402
from srpo_kernels.grpo_loss import grpo_loss  # noqa: E402
from srpo_kernels.grpo_loss_reference import GRPOLossConfig, reference_grpo_loss  # noqa: E402
from srpo_kernels.logprobs import logprobs  # noqa: E402
from srpo_kernels.logprobs_reference import reference_logprobs  # noqa: E402

from tests.kernels.helpers import generator, rel_err, special_targets  # noqa: E402

N, SHARD, H, VOCAB, TEMP = 37, 48, 16, 90, 0.8


def grads_of(outputs, inputs, grad_outputs):
    return torch.autograd.grad(outputs, inputs, [g.to(o.dtype) for o, g in zip(outputs, grad_outputs)])


def check_logprobs(group, cols, findings):
    gen = generator(0)
    full = torch.randn(N, 2 * SHARD, generator=gen) * 3
    targets = special_targets(N, VOCAB, 2 * SHARD, gen)
    targets[6], targets[7] = SHARD - 1, SHARD  # the last column of rank 0 and the first of rank 1
    g = [torch.randn(N, generator=gen), torch.randn(N, generator=gen)]
    x = full.double().requires_grad_(True)
    ref = reference_logprobs(x, targets, vocab_size=VOCAB, temperature=TEMP, compute_entropy=True)
    ref_grad = grads_of(ref, [x], g)[0][:, cols]

    for backend, fn, kw in (("triton", logprobs, {"block_v": 16}), ("torch", reference_logprobs, {"chunk_size": 8})):
        x = full[:, cols].clone().requires_grad_(True)
        out = fn(x, targets, vocab_size=VOCAB, temperature=TEMP, compute_entropy=True, tp_group=group, **kw)
        grad = grads_of(out, [x], g)[0]
        findings[f"logprobs/{backend}/logp"] = rel_err(out[0].detach(), ref[0].detach())
        findings[f"logprobs/{backend}/entropy"] = rel_err(out[1].detach(), ref[1].detach())
        findings[f"logprobs/{backend}/grad_logits"] = rel_err(grad, ref_grad)


def check_fused_linear(group, cols, findings):
    gen = generator(1)
    hidden = torch.randn(N, H, generator=gen)
    weight = torch.randn(2 * SHARD, H, generator=gen) * 0.5
    targets = special_targets(N, VOCAB, 2 * SHARD, gen)
    g = [torch.randn(N, generator=gen), torch.randn(N, generator=gen)]
    h, w = hidden.double().requires_grad_(True), weight.double().requires_grad_(True)
    ref = reference_fused_linear_logprobs(h, w, targets, vocab_size=VOCAB, temperature=TEMP, compute_entropy=True)
    ref_dh, ref_dw = grads_of(ref, [h, w], g)

    runs = (
        ("triton", fused_linear_logprobs, {"vocab_chunk_size": 20, "block_v": 16}),
        ("triton-no-reduce", fused_linear_logprobs, {"vocab_chunk_size": 20, "reduce_grad_input": False}),
        ("torch", reference_fused_linear_logprobs, {"chunk_size": 8}),
    )
    for backend, fn, kw in runs:
        h, w = hidden.clone().requires_grad_(True), weight[cols].clone().requires_grad_(True)
        out = fn(h, w, targets, vocab_size=VOCAB, temperature=TEMP, compute_entropy=True, tp_group=group, **kw)
        dh, dw = grads_of(out, [h, w], g)
        if not kw.get("reduce_grad_input", True):
            dist.all_reduce(dh, group=group)  # what Megatron's copy_to_tensor_model_parallel_region would do
        findings[f"fused_linear/{backend}/grad_hidden"] = rel_err(dh, ref_dh)
        if backend != "triton-no-reduce":
            findings[f"fused_linear/{backend}/logp"] = rel_err(out[0].detach(), ref[0].detach())
            findings[f"fused_linear/{backend}/entropy"] = rel_err(out[1].detach(), ref[1].detach())
            findings[f"fused_linear/{backend}/grad_weight"] = rel_err(dw, ref_dw[cols])


def check_grpo(group, cols, findings):
    gen = generator(2)
    b, t = 4, 9
    full = torch.randn(b, t, 2 * SHARD, generator=gen) * 2
    targets = special_targets(b * t, VOCAB, 2 * SHARD, gen).view(b, t)
    mask = torch.rand(b, t, generator=gen) > 0.25
    mask.view(-1)[[1, 3, b * t - 2]] = False
    current, _ = reference_logprobs(full.double(), targets, vocab_size=VOCAB, temperature=TEMP)
    old = (current + 0.3 * torch.randn(b, t, generator=gen, dtype=torch.float64)).float()
    kw = dict(
        config=GRPOLossConfig(dual_clip_c=1.3, kl_coef=0.1, entropy_coef=0.01, tis_cap=1.3),
        ref_logp=old + 0.3 * torch.randn(b, t, generator=gen),
        rollout_logp=old + 0.5 * torch.randn(b, t, generator=gen),
        vocab_size=VOCAB, temperature=TEMP, num_global_tokens=40,
    )
    adv = torch.randn(b, t, generator=gen)
    x = full.double().requires_grad_(True)
    ref_loss, ref_metrics = reference_grpo_loss(x, targets, old, adv, mask, **kw)
    ref_grad = torch.autograd.grad(ref_loss, [x])[0][..., cols]

    for backend, fn, extra in (("triton", grpo_loss, {"block_v": 16}), ("torch", reference_grpo_loss, {"chunk_size": 8})):
        x = full[..., cols].clone().requires_grad_(True)
        loss, metrics = fn(x, targets, old, adv, mask, tp_group=group, **kw, **extra)
        grad = torch.autograd.grad(loss, [x])[0]
        findings[f"grpo/{backend}/loss"] = rel_err(loss.detach(), ref_loss.detach())
        findings[f"grpo/{backend}/grad_logits"] = rel_err(grad, ref_grad)
        assert set(metrics) == set(ref_metrics), (sorted(metrics), sorted(ref_metrics))
        findings[f"grpo/{backend}/metrics"] = rel_err(torch.stack([metrics[k] for k in sorted(metrics)]),
                                                      torch.stack([ref_metrics[k] for k in sorted(metrics)]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    assert world == 2, "this worker checks TP2"
    group = dist.new_group(list(range(world)))  # a non-default group, as Megatron's TP group is
    cols = slice(rank * SHARD, (rank + 1) * SHARD)

    findings: dict[str, float] = {}
    check_logprobs(group, cols, findings)
    check_fused_linear(group, cols, findings)
    check_grpo(group, cols, findings)

    names = sorted(findings)
    errors = torch.tensor([findings[k] for k in names], dtype=torch.float64)
    dist.all_reduce(errors, op=dist.ReduceOp.MAX)
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump(dict(zip(names, errors.tolist())), f, indent=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
