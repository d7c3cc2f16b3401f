"""Tests of the rollout pieces that need no engine: the shard scatter against hf_layout, the bucket plan, the
stale-weight guard, the vocab-parallel log-probs, prompt/seed distribution, and the packed transport of rollout
outputs (single process, plus one 4-rank gloo launch for the gather between engines)."""

import json
import math

import pytest
import torch

from srpo_mcore.config.model import ModelConfig
from srpo_mcore.config.rollout import RolloutConfig
from srpo_mcore.model.hf_layout import expected_hf_shape, param_map, to_hf_tensors, to_mcore_shard
from srpo_mcore.rollout.engine import (
    SamplingOptions,
    engine_layout,
    request_seed,
    request_seeds,
    resolve_rollout_dtype,
    shard_bounds,
)
from srpo_mcore.rollout.env import cpu_bind_for_local_rank
from srpo_mcore.rollout.guard import MismatchGuard, StaleWeightsError
from srpo_mcore.rollout.layout import scatter_shard
from srpo_mcore.rollout.packed import RaggedRows
from srpo_mcore.rollout.weight_sync_plan import ParamSlot, plan_buckets, vllm_layer_of
from tests.rollout.megatron_logprobs import vocab_parallel_logprobs
from tests.torchrun import REPO_ROOT, run_torchrun

MODEL = ModelConfig(num_layers=2, hidden_size=64, ffn_hidden_size=96, num_attention_heads=8, num_query_groups=4,
                    vocab_size=100, make_vocab_size_divisible_by=32)
LAYER_PARAMS = ["self_attention.linear_qkv.weight", "self_attention.linear_qkv.bias",
                "self_attention.linear_proj.weight", "input_layernorm.weight", "pre_mlp_layernorm.weight",
                "mlp.linear_fc1.weight", "mlp.linear_fc2.weight"]
NAMES = (["embedding.word_embeddings.weight", "output_layer.weight", "decoder.final_layernorm.weight"]
         + [f"decoder.layers.1.{p}" for p in LAYER_PARAMS])


@pytest.mark.parametrize("tp", [1, 2, 4])
@pytest.mark.parametrize("name", NAMES)
def test_scatter_shard_rebuilds_what_to_hf_tensors_builds(name, tp):
    pm = param_map(name, layer_offset=0)
    g = torch.Generator().manual_seed(0)
    hf = [torch.randn(expected_hf_shape(n, MODEL), generator=g) for n in pm.hf_names]
    shards = [to_mcore_shard(pm, hf, MODEL, r, tp) for r in range(tp)]
    reference = to_hf_tensors(pm, shards if pm.tp_split_dim is not None else shards[:1], MODEL)
    out = [torch.full(expected_hf_shape(n, MODEL), float("nan"), dtype=torch.float64) for n in pm.hf_names]
    for r in range(tp):
        scatter_shard(pm, shards[r], out, MODEL, r, tp)
    for n, o, h in zip(pm.hf_names, out, hf):
        assert torch.equal(o.float(), reference[n]) and torch.equal(o.float(), h), n


def test_vllm_layers_keep_fused_groups_together():
    assert vllm_layer_of("model.layers.3.self_attn.q_proj.weight") == "model.layers.3.self_attn.qkv_proj"
    assert vllm_layer_of("model.layers.3.self_attn.v_proj.bias") == "model.layers.3.self_attn.qkv_proj"
    assert vllm_layer_of("model.layers.3.mlp.up_proj.weight") == "model.layers.3.mlp.gate_up_proj"
    assert vllm_layer_of("model.layers.3.self_attn.o_proj.weight") == "model.layers.3.self_attn.o_proj"
    assert vllm_layer_of("model.embed_tokens.weight") == "model.embed_tokens"


def _slots(stage, layers, offset):
    names = ([] if stage else ["embedding.word_embeddings.weight"]) + [
        f"decoder.layers.{i}.{p}" for i in range(layers) for p in LAYER_PARAMS]
    if stage == 1:
        names += ["decoder.final_layernorm.weight", "output_layer.weight"]
    out = []
    for name in names:
        pm = param_map(name, offset)
        shapes = tuple(expected_hf_shape(n, MODEL) for n in pm.hf_names)
        out.append(ParamSlot(stage, name, offset, (1,), shapes))
    return out


@pytest.mark.parametrize("bucket_numel", [1, 20_000, 10**9])
def test_buckets_hold_whole_layers_of_one_stage(bucket_numel):
    slots = _slots(0, 1, 0) + _slots(1, 1, 1)
    buckets = plan_buckets(slots, bucket_numel)
    assert [s for b in buckets for s in b.slots] == slots  # everything, in order, once
    assert [b.index for b in buckets] == list(range(len(buckets)))
    seen = {}
    for b in buckets:
        assert {s.stage for s in b.slots} == {b.stage}
        for s in b.slots:
            layer = (s.stage, vllm_layer_of(s.param_map.hf_names[0]))
            assert seen.setdefault(layer, b.index) == b.index, f"{layer} split over buckets"
        many_layers = len({vllm_layer_of(s.param_map.hf_names[0]) for s in b.slots}) > 1
        assert b.hf_numel <= bucket_numel or not many_layers  # only a single oversized layer may exceed it
    if bucket_numel == 10**9:
        assert len(buckets) == 2  # one per stage


def test_guard_alarm_on_jump_not_on_noise():
    guard = MismatchGuard(alarm_ratio=5.0, floor=1e-3)
    base = torch.zeros(1000)
    assert not guard.update(base, base + 1e-6).alarm  # first update sets the baseline
    assert not guard.update(base, base + 3e-6).alarm  # 3x of a sub-floor baseline: noise
    stale = guard.update(base, base + torch.linspace(-1.0, 1.0, 1000))
    assert stale.alarm and guard.alarms == 1
    assert stale.max_abs == pytest.approx(1.0)
    assert stale.frac_ratio_outside == pytest.approx((torch.linspace(-1, 1, 1000).abs() > math.log(2)).double().mean())
    assert guard.baseline < 1e-5  # alarms do not move the baseline
    assert not guard.update(base, base + 2e-6).alarm


# Per-step mean |log p_trainer - log p_rollout| measured on the CPU quickstart model (2 ranks, TP2, 32 samples a
# step; docs/benchmarks.md): fp32 after every sync, bf16 (params and engine) after every sync, and the step after
# a skipped sync in bf16 (debug.skip_weight_sync_at_step, lr 1e-4).
FP32_HEALTHY = [3e-7, 4e-7, 3.5e-7, 3e-7]
BF16_HEALTHY = [8.5e-4, 1.53e-3, 1.25e-3, 1.16e-3, 2.35e-3]  # the last: the highest healthy bf16 step seen
BF16_STALE = 1.49e-2


@pytest.mark.parametrize("healthy", [FP32_HEALTHY, BF16_HEALTHY], ids=["fp32", "bf16"])
def test_default_guard_thresholds_fit_the_measured_mismatch(healthy):
    """The defaults (alarm at 5x the running baseline, never below 5 x 1e-3) stay quiet over measured healthy steps
    in fp32 and bf16 (bf16's mean sits around the floor: the alarm is at 5e-3, 2x the highest healthy step) and trip
    on the measured stale bf16 step (3x above the alarm level), so one set of defaults serves both dtypes."""
    guard = MismatchGuard.from_config(RolloutConfig())
    ones = torch.ones(600)
    for value in healthy:
        assert not guard.update(0 * ones, value * ones).alarm, value
    assert guard.update(0 * ones, BF16_STALE * ones).alarm


def test_guard_mask_and_raise():
    guard = MismatchGuard.from_config(RolloutConfig(), raise_on_alarm=True)
    lp = torch.zeros(2, 4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    noisy = lp + 1e-6
    noisy[mask == 0] = 50.0  # padding: ignored
    assert guard.update(lp, noisy, mask).tokens == 5
    with pytest.raises(StaleWeightsError, match="weight sync skipped"):
        guard.update(lp, lp + 0.5, mask)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_vocab_parallel_logprobs_single_rank(temperature):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 128, generator=g)
    logits[..., 100:] = 30.0  # padded columns must not count
    targets = torch.randint(0, 100, (2, 5), generator=g)
    got = vocab_parallel_logprobs(logits, targets, vocab_size=100, tp_group=None, tp_rank=0, temperature=temperature)
    want = torch.log_softmax(logits[..., :100].double() / temperature, -1).gather(-1, targets[..., None]).squeeze(-1)
    assert torch.allclose(got.double(), want, atol=1e-5)


def test_prompt_distribution_and_seeds():
    for n_items, n_shards in [(3, 4), (10, 3), (8, 2)]:
        blocks = [shard_bounds(n_items, n_shards, s) for s in range(n_shards)]
        assert blocks[0][0] == 0 and blocks[-1][1] == n_items
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    assert engine_layout(4, 3, 2) == (1, 2, [2, 3])
    with pytest.raises(ValueError, match="not divisible"):
        engine_layout(4, 0, 3)
    seeds = [request_seed(7, i, 4) for i in range(100)]
    assert len(set(seeds)) == 100 and all(0 <= s < 2**31 - 4 for s in seeds)
    assert request_seed(7, 5, 4) == request_seed(7, 5, 4) != request_seed(8, 5, 4)
    assert request_seeds(7, 100, 4) == seeds  # one seed for the call, or one per prompt as given
    assert request_seeds([3, 9], 2, 4) == [3, 9]
    with pytest.raises(ValueError, match="2 request seeds for 3 prompts"):
        request_seeds([3, 9], 3, 4)
    with pytest.raises(ValueError, match="outside"):
        request_seeds([2**31 - 4], 1, 4)  # sample 3 would use 2**31 - 1


def test_sampling_options_and_dtype_from_config():
    cfg = RolloutConfig(max_response_length=64, temperature=0.8, top_p=0.9)
    assert SamplingOptions.from_config(cfg, [2]) == SamplingOptions(64, 0.8, 0.9, (2,))
    assert resolve_rollout_dtype(cfg, ModelConfig(params_dtype="bfloat16")) == torch.bfloat16
    assert resolve_rollout_dtype(RolloutConfig(dtype="float32"), ModelConfig(params_dtype="bfloat16")) == torch.float32


def test_cpu_binding(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert cpu_bind_for_local_rank() == "4,5,6,7"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    monkeypatch.setenv("LOCAL_RANK", "9")
    assert cpu_bind_for_local_rank() == "1"


def test_only_the_rotary_reload_warning_is_dropped(tmp_path, monkeypatch, caplog):
    """configure_vllm_environment silences vLLM's per-push "RotaryEmbedding: Failed to load weights" (the rotary
    cache is in no checkpoint) and nothing else of that logger."""
    import logging

    from srpo_mcore.rollout import env

    for var in ("VLLM_CACHE_ROOT", "VLLM_CONFIG_ROOT", "VLLM_RPC_BASE_PATH", "VLLM_LOGGING_LEVEL",
                "VLLM_NO_USAGE_STATS", "VLLM_DO_NOT_TRACK", "VLLM_CPU_OMP_THREADS_BIND"):
        monkeypatch.delenv(var, raising=False)  # restored after the test
    monkeypatch.setattr(env, "_CONFIGURED_FOR", None)
    env.configure_vllm_environment(tmp_path)
    env.configure_vllm_environment(tmp_path)  # idempotent: one filter
    layerwise = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    assert sum(isinstance(f, env._RotaryReloadWarningFilter) for f in layerwise.filters) == 1
    with caplog.at_level(logging.WARNING, logger=layerwise.name):
        layerwise.warning("%s: Failed to load weights", "RotaryEmbedding")
        layerwise.warning("%s: Failed to load weights", "QKVParallelLinear")
    assert [r.getMessage() for r in caplog.records] == ["QKVParallelLinear: Failed to load weights"]


# ---------------------------------------------------------------------------------- packed rollout outputs


def test_packed_rows_round_trip_exactly():
    meta = [(0, 3, 1, 7), (5, 0, 0, 7), (2**40, 1, 0, 0)]
    ids = [[151643, 0, 17], [], [2**31 - 1]]
    values = [[-0.125, -float("inf"), -3.0517578125e-05], [], [-(2.0**-126)]]  # all exact in float32
    buf = RaggedRows.build(meta, values, ids, columns=4).to_bytes()
    assert buf.dtype == torch.uint8
    back = RaggedRows.from_bytes(buf.clone()).rows()
    assert back == [(list(m), tuple(t), tuple(v)) for m, t, v in zip(meta, ids, values)]
    no_ids = RaggedRows.from_bytes(RaggedRows.build([(1,)], [[-0.5, -2.0]], columns=1).to_bytes()).rows()
    assert no_ids == [([1], (), (-0.5, -2.0))]
    assert RaggedRows.from_bytes(RaggedRows.build([], [], [], columns=4).to_bytes()).rows() == []


def test_packed_views_are_zero_copy_slices_of_the_buffer():
    rows = RaggedRows.build([(7,), (8,), (9,)], [[-1.0, -2.0], [], [-3.0]], [[5, 6], [], [7]], columns=1)
    received = RaggedRows.from_bytes(rows.to_bytes())
    views = received.views()
    assert [(m, ids.tolist(), v.tolist()) for m, ids, v in views] == \
        [(m, list(ids), list(v)) for m, ids, v in received.rows()]
    assert views[0][1].dtype == torch.int32 and views[0][2].dtype == torch.float32
    received.values[2] = -4.0  # the buffer, seen through the view of row 2: no copy was made
    assert views[2][2].tolist() == [-4.0]
    values_only = RaggedRows.build([(0,)], [[-0.5]], columns=1).views()
    assert values_only[0][1].numel() == 0 and values_only[0][2].tolist() == [-0.5]


def test_packed_values_are_float32():
    # vLLM's log-probs are float32 values; a float64-only value is rounded to the nearest float32.
    value = 0.1
    (_, _, (got,)), = RaggedRows.from_bytes(RaggedRows.build([(0,)], [[value]], columns=1).to_bytes()).rows()
    assert got == float(torch.tensor(value, dtype=torch.float32)) and got != value


def test_packed_rows_reject_bad_input():
    with pytest.raises(ValueError, match="row 1: 2 token ids but 1 values"):
        RaggedRows.build([(0,), (1,)], [[0.0], [0.0]], [[1], [1, 2]], columns=1)
    with pytest.raises(ValueError, match="2 meta rows, 1 value rows"):
        RaggedRows.build([(0,), (1,)], [[0.0]], columns=1)
    buf = RaggedRows.build([(0,)], [[0.0, 1.0]], [[1, 2]], columns=1).to_bytes()
    with pytest.raises(ValueError, match="does not match its header"):
        RaggedRows.from_bytes(buf[:-4])


@pytest.mark.distributed
def test_packed_gather_between_engines(tmp_path):
    out = tmp_path / "findings.json"
    run_torchrun(REPO_ROOT / "tests/rollout/workers/packed_gather.py", 4, "--out", str(out), timeout=300)
    per_rank = json.loads(out.read_text())
    for rank, findings in enumerate(per_rank):
        assert findings["tp2_one_engine_empty"] and findings["tp1_ragged"] and findings["tp1_values_only"], rank
        assert "rollout engine(s) [1] produced different outputs" in findings["divergence"], rank


@pytest.mark.distributed
def test_gather_benchmark_runs_both_methods(tmp_path):
    # The benchmark itself exits non-zero if the two gathers disagree.
    out = tmp_path / "bench.json"
    run_torchrun(REPO_ROOT / "benchmarks/rollout_gather.py", 2, "--samples", "6", "--tokens", "16",
                 "--repeats", "1", "--out", str(out), timeout=300)
    rows = json.loads(out.read_text())["rows"]
    assert [(r["method"], r["rollout_tp"]) for r in rows] == [("object", 1), ("packed", 1), ("object", 2),
                                                              ("packed", 2)]
    packed_tp2 = rows[3]
    assert packed_tp2["samples"] == 6 and packed_tp2["bytes_received_per_rank"] == packed_tp2["bytes_per_engine"]
    assert rows[2]["bytes_received_per_rank"] == 2 * rows[2]["bytes_per_engine"]
