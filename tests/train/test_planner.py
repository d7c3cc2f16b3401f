"""The dry-run memory planner: hand-computed figures, every shipped config at its node count, rejections."""

import io
import json
import re
from pathlib import Path

import pytest

from srpo_mcore.config import load_config
from srpo_mcore.planning.__main__ import main
from srpo_mcore.planning.memory import (
    GIB,
    count_parameters,
    layer_activation_bytes_per_token,
    lm_head_bytes,
    plan_memory,
    stage_parameters,
)
from srpo_mcore.planning.report import run_dry_run

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHIPPED = [("srpo/qwen2.5-32b-4x8.yaml", 4), ("srpo/qwen2.5-32b-8x8.yaml", 8), ("srpo/qwen2.5-7b-1x8.yaml", 1),
           ("srpo/qwen2.5-1.5b-1x8.yaml", 1)]


def cfg(name, *overrides):
    return load_config(CONFIGS / name, list(overrides))


def dry_run(config, nodes, gpus_per_node=8):
    out, err = io.StringIO(), io.StringIO()
    rc = run_dry_run(config, nodes, gpus_per_node, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------ hand-computed numbers


def test_parameter_counts_match_the_published_sizes():
    # Qwen2.5-7B: h=3584, 28 q heads / 4 kv heads of d=128, ffn 18944, 28 layers, vocab 152064, untied.
    #   q/k/v: 3584 x (3584 + 2*512) = 16,515,072 weights + 4,608 bias = 16,519,680
    #   o: 3584^2 = 12,845,056;  gate/up/down: 3 x 3584 x 18944 = 203,685,888;  2 norms: 7,168
    #   layer = 233,057,792;  x 28 = 6,525,618,176
    #   embedding + output: 2 x 152064 x 3584 = 1,089,994,752;  final norm 3,584
    assert count_parameters(cfg("models/qwen2.5-7b.yaml").model).total == 7_615_616_512  # HF: "7.61B"
    # Qwen2.5-32B: h=5120, 40/8 heads, ffn 27648, 64 layers: layer = 36,707,328 + 26,214,400 + 424,673,280
    #   + 10,240 = 487,605,248; x 64 + 2 x 152064 x 5120 + 5120
    assert count_parameters(cfg("models/qwen2.5-32b.yaml").model).total == 32_763_876_352  # HF: "32.8B"
    # Qwen2.5-1.5B: h=1536, 12/2 heads, ffn 8960, 28 layers, tied: layer = 3,147,776 + 2,359,296 + 41,287,680
    #   + 3,072 = 46,797,824; x 28 + 151936 x 1536 (once) + 1536
    assert count_parameters(cfg("models/qwen2.5-1.5b.yaml").model).total == 1_543_714_304  # HF: "1.54B"


def test_7b_state_bytes_per_gpu_at_tp4_dp2():
    c = cfg("srpo/qwen2.5-7b-1x8.yaml")  # TP4 PP1 DP2, bf16, distributed optimizer
    plan = plan_memory(c, nodes=1, gpus_per_node=8)
    # Per rank: 28 layers x ((233,057,792 - 7,168 norms) / 4 + 7,168) = 1,631,555,072
    #   + embedding / 4 + output / 4 = 2 x 136,249,344 + final norm 3,584 = 1,904,057,344 parameters
    n = 28 * ((233_057_792 - 7_168) // 4 + 7_168) + 2 * (152_064 * 3_584 // 4) + 3_584
    assert n == 1_904_057_344
    assert stage_parameters(count_parameters(c.model), tp=4, pp=1, stage=0) == n
    ws = plan.worst_stage
    assert ws.weights == 2 * n  # bf16
    assert ws.grads == 4 * n  # fp32 grad buffer (grad_reduce_in_fp32)
    assert ws.optimizer == 12 * n // 2  # fp32 master + Adam m + v, sharded over DP=2
    assert (ws.weights + ws.grads + ws.optimizer) / GIB == pytest.approx(21.28, abs=0.01)


def test_7b_activations_and_kv_cache():
    c = cfg("srpo/qwen2.5-7b-1x8.yaml")  # TP4 with sequence parallel, no recompute, 16384-token micro-batches
    # Per layer per token (bf16): split by TP: Q 2h + K,V 4*(4*128) + attention out 2h + fc1 out 4F + SwiGLU out 2F
    #   = 7168 + 2048 + 7168 + 75776 + 37888 = 130,048 / 4 = 32,512; norm/matmul inputs 8h = 28,672 / 4 (SP) = 7,168
    assert layer_activation_bytes_per_token(c.model, 4, True, 16384, False) == 39_680
    plan = plan_memory(c, nodes=1, gpus_per_node=8)
    # 28 layers x 16384 tokens, one micro-batch in flight, + final-norm and output-layer inputs 4hT / 4
    assert plan.worst_stage.activations == 39_680 * 28 * 16_384 + 4 * 3_584 * 16_384 // 4
    # KV per token at rollout TP1: 2 (K, V) x 28 layers x 4 groups x 128 x 2 bytes = 57,344 = 56 KiB
    assert plan.kv_bytes_per_token == 57_344
    # 256 x 32 sequences over 8 engines = 1024 each, of 1024 + 8192 tokens
    assert plan.sequences_per_engine == 1024 and plan.sequence_tokens == 9216


def test_full_recompute_keeps_one_input_per_layer():
    c = cfg("srpo/qwen2.5-32b-4x8.yaml", "parallel.pipeline_model_parallel_size=1",
            "parallel.recompute_granularity=full")
    plan = plan_memory(c, nodes=4, gpus_per_node=8)
    # 64 checkpointed layer inputs of 2hT / 8 (sequence parallel) + one layer recomputed during its backward:
    # (4h + 4*8*128 + 6F) / 8 + 8h / 8 = 23,808 + 5,120 = 28,928 bytes per token; + final norm / output inputs
    h, t = 5_120, 16_384
    assert plan.worst_stage.activations == 64 * 2 * h * t // 8 + 28_928 * t + 4 * h * t // 8  # 1.73 GiB


def test_32b_kv_cache_per_token_at_rollout_tp4():
    plan = plan_memory(cfg("srpo/qwen2.5-32b-4x8.yaml"), nodes=4, gpus_per_node=8)
    assert plan.kv_bytes_per_token == 2 * 64 * (8 // 4) * 128 * 2  # 64 KiB
    assert (plan.tp, plan.pp, plan.dp, plan.rollout_dp) == (8, 2, 2, 8)


def test_lm_head_is_counted_as_the_trainer_runs_it():
    # Qwen2.5-1.5B at TP1, bf16, 16384-token micro-batches, padded vocab 151,936, h 1536, Triton kernels (auto).
    t, v, h = 16_384, 151_936, 1_536
    weight_grad = 2 * h * v  # the output weight's bf16 gradient before DDP adds it to the fp32 buffer
    fused = plan_memory(cfg("srpo/qwen2.5-1.5b-1x8.yaml"), nodes=1, gpus_per_node=8)
    last = fused.last_stage
    # logits path: two bf16 [T, V] buffers at a time (logits + their transposed copy / their gradient)
    assert last.lm_head_logits_path == 2 * 2 * t * v + weight_grad  # 9.7 GiB
    # fused: one 256 MiB logits chunk + the fp32 hidden-state gradient (no sequence parallelism: no gather)
    assert last.lm_head_fused == 256 * 2**20 + 4 * t * h + weight_grad  # 0.8 GiB
    assert fused.phases["train"]["LM head + loss"] == last.lm_head_fused  # train.fused_lm_head defaults to true
    logits = plan_memory(cfg("srpo/qwen2.5-1.5b-1x8.yaml", "train.fused_lm_head=false"), nodes=1, gpus_per_node=8)
    assert logits.phases["train"]["LM head + loss"] == last.lm_head_logits_path
    assert logits.phase_total("train") - fused.phase_total("train") == last.lm_head_logits_path - last.lm_head_fused


def test_lm_head_under_sequence_parallelism_and_the_torch_backend():
    c = cfg("srpo/qwen2.5-7b-1x8.yaml")  # TP4 with sequence parallelism, 16384 tokens, h 3584, vocab 152,064
    t, h, v_local = 16_384, 3_584, 152_064 // 4
    weight_grad = 2 * h * v_local
    # the fused head gathers the sequence-parallel hidden states (bf16 [T, h]) before its GEMMs
    assert lm_head_bytes(c, fused=True) == 256 * 2**20 + 4 * t * h + 2 * t * h + weight_grad
    torch_backend = cfg("srpo/qwen2.5-7b-1x8.yaml", "train.kernel_backend=torch")
    chunk = 4 * 1024 * v_local  # one fp32 [1024, V/t] temporary of the torch backend's token chunks
    assert lm_head_bytes(torch_backend, fused=False) == lm_head_bytes(c, fused=False) + 5 * chunk
    assert lm_head_bytes(torch_backend, fused=True) == lm_head_bytes(c, fused=True) - 256 * 2**20 + 6 * chunk


def test_lm_head_formula_covers_the_cpu_measurement():
    # benchmarks/lm_head_memory.py, Qwen2.5-0.5B head (h 896, vocab 151,936), 8192 tokens, bf16, torch backend,
    # measured peak extra memory (docs/benchmarks.md): logits path 7.43 GiB, fused LM head 3.64 GiB. The planner
    # must not plan below what was measured, nor far above it.
    c = cfg("models/qwen2.5-0.5b.yaml", "train.max_tokens_per_micro_batch=8192", "train.kernel_backend=torch",
            "model.params_dtype=bfloat16")
    assert c.model.padded_vocab_size == 151_936 and c.model.hidden_size == 896
    for fused, measured in ((False, 7.43), (True, 3.64)):
        assert measured <= lm_head_bytes(c, fused=fused) / GIB <= 1.1 * measured


def test_dry_run_prints_which_lm_head_it_counted():
    _, fused, _ = dry_run(cfg("srpo/qwen2.5-1.5b-1x8.yaml"), 1)
    _, logits, _ = dry_run(cfg("srpo/qwen2.5-1.5b-1x8.yaml", "train.fused_lm_head=false"), 1)
    assert "LM head + loss (fused)" in fused and "train.fused_lm_head: true" in fused
    assert "LM head + loss (logits)" in logits and "the fused LM head would need" in logits


@pytest.mark.parametrize("flag", ["--offload-trainer", "--unfused-logprobs"])
def test_planner_offers_no_switch_the_trainer_lacks(flag, capsys):
    # Nothing offloads the trainer to the host, and the LM head follows train.fused_lm_head: no planner-only flags.
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(CONFIGS / "srpo/qwen2.5-7b-1x8.yaml"), flag])
    assert exit_info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ shipped configs


@pytest.mark.parametrize("name,nodes", SHIPPED)
def test_shipped_config_fits_its_cluster(name, nodes):
    rc, out, err = dry_run(cfg(name), nodes)
    assert rc == 0, out + err
    assert "OK: peak" in out and "DOES NOT FIT" not in out
    plan = plan_memory(cfg(name), nodes, 8)
    assert plan.peak_bytes <= 0.95 * plan.gpu_memory_bytes  # >= 5% headroom for fragmentation


def test_dry_run_through_the_entry_point(capsys):
    import pretrain_srpo

    rc = pretrain_srpo.main(["--config", str(CONFIGS / "srpo/qwen2.5-32b-8x8.yaml"), "--dry-run", "--nodes", "8",
                             "--gpus-per-node", "8"])
    assert rc == 0
    assert "trainer: TP=8 PP=2 DP=4" in capsys.readouterr().out


def test_json_output(capsys):
    rc = main(["--config", str(CONFIGS / "srpo/qwen2.5-7b-1x8.yaml"), "--nodes", "1", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["fits"] is True
    assert data["total_params"] == 7_615_616_512
    assert set(data["phase_totals"]) == {"train", "sync", "rollout"}


# ------------------------------------------------------------------------------------ rejections


def test_impossible_plan_is_rejected_with_reasons():
    # 32B at TP8 x PP1 without the distributed optimizer: 4.1 B params/GPU x (2 + 4 + 12) bytes = 68.7 GiB of
    # trainer state before a single activation.
    c = cfg("srpo/qwen2.5-32b-4x8.yaml", "parallel.pipeline_model_parallel_size=1",
            "parallel.use_distributed_optimizer=false")
    rc, out, err = dry_run(c, 4)
    assert rc == 1
    assert "DOES NOT FIT: the train phase needs" in out
    assert "use_distributed_optimizer: true" in err and "recompute_granularity: full" in err


def test_kv_cache_too_small_for_one_sequence():
    # 7B at rollout TP1 with 20% of 79.6 GiB: 15.9 GiB budget < 14.2 GiB weights + activations + CUDA graphs
    rc, out, err = dry_run(cfg("srpo/qwen2.5-7b-1x8.yaml", "rollout.gpu_memory_utilization=0.2"), 1)
    assert rc == 1
    assert "cannot hold one 9216-token sequence" in err


def test_vllm_without_sleep_mode_keeps_its_budget_in_the_train_phase():
    rc, out, err = dry_run(cfg("srpo/qwen2.5-7b-1x8.yaml", "rollout.enable_sleep_mode=false"), 1)
    assert rc == 1 and "rollout.enable_sleep_mode: true" in err


def test_rollout_budget_suggestion_is_enough():
    c = cfg("srpo/qwen2.5-32b-4x8.yaml", "rollout.gpu_memory_utilization=0.8")
    rc, out, err = dry_run(c, 4)
    assert rc == 1 and "vLLM would refuse to start" in err
    suggested = re.search(r"gpu_memory_utilization <= ([0-9.]+)", err).group(1)
    assert float(suggested) < 0.8
    assert dry_run(cfg("srpo/qwen2.5-32b-4x8.yaml", f"rollout.gpu_memory_utilization={suggested}"), 4)[0] == 0


@pytest.mark.parametrize("name,nodes,gpus,needle", [
    ("srpo/qwen2.5-32b-4x8.yaml", 3, 8, "world size 24 is not divisible by TP x PP = 8 x 2 = 16"),
    ("srpo/qwen2.5-32b-4x8.yaml", 1, 8, "world size 8 is not divisible by TP x PP"),
    ("srpo/qwen2.5-7b-1x8.yaml", 1, 6, "world size 6 is not divisible by TP x PP = 4 x 1 = 4"),
    ("srpo/qwen2.5-7b-1x8.yaml", 0, 8, "need at least one node"),
])
def test_layout_mismatch_is_rejected(name, nodes, gpus, needle):
    rc, out, err = dry_run(cfg(name), nodes, gpus)
    assert rc == 2 and out == ""
    assert needle in err and "invalid layout" in err
