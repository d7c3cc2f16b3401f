"""Dry-run memory planner: does a config fit ``nodes x gpus_per_node`` GPUs, and with what per-GPU budget?

    python pretrain_srpo.py --config configs/srpo/qwen2.5-32b-4x8.yaml --dry-run --nodes 4 --gpus-per-node 8
    python -m srpo_mcore.planning --config ... --nodes 4 --gpus-per-node 8 [--json] [--gpu-memory-gib 80]

This module computes the plan; ``report.py`` prints it (``run_dry_run``), ``__main__.py`` is the CLI.

Nothing is allocated; no GPU, Megatron or vLLM is needed. Exit codes: 0 the plan fits, 1 it cannot fit
(the reason and what to change are printed), 2 the layout is invalid for this world size.

Trainer and vLLM share every GPU. With rollout.enable_sleep_mode vLLM sleeps while the trainer trains (level 1
moves its weights to host memory, level 2 drops them; both free the KV cache) and wakes for rollouts; without
it vLLM keeps its whole budget throughout. The trainer's weights, fp32 grad buffer and optimizer state stay
resident throughout (nothing offloads them to the host). So one GPU goes through three phases and the plan
checks each:

* train   = trainer state + activations of the in-flight micro-batches + LM head + runtime (+ vLLM's budget
  when it does not sleep, else its CUDA graphs)
* sync    = trainer state + vLLM weights (woken) + weight-sync buckets + runtime
* rollout = trainer state + runtime + vLLM's whole budget (gpu_memory_utilization x GPU memory: its weights,
  its forward activations and the KV cache, which takes whatever is left of the budget). vLLM refuses to
  start when less than its budget is free, so this phase must fit exactly as configured.

Per-GPU formulas (bytes; ``P`` = parameters on this rank, ``T`` = train.max_tokens_per_micro_batch,
``t`` = trainer TP, ``t'`` = t with sequence parallel else 1, ``h`` hidden, ``F`` ffn, ``g`` KV groups,
``d`` head dim, ``a`` query heads, ``V`` padded vocab, ``L_s`` layers of the pipeline stage):

* weights  P x bytes(params_dtype); grads P x 4 (Megatron DDP with grad_reduce_in_fp32, what
  srpo_mcore/train/optim.py builds); optimizer P x 12 (fp32 master + Adam m + v; 8 with fp32 params),
  divided by DP with the distributed optimizer.
* activations per layer per token, bf16 (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
  Transformer Models", eq. 1-2, adapted: no dropout in Qwen2, K/V of g groups, SwiGLU's fc1 output is 2F wide):
  ``A = (2h [Q] + 4gd [K,V] + 2h [attention out] + 4F [fc1 out] + 2F [SwiGLU out]) / t
  + (2h + 2h [norm inputs] + 2h [QKV input] + 2h [fc1 input]) / t'``; with the local (non-fused) attention
  and no selective recompute, ``+ 2 a T / t`` for the softmax probabilities. Fused (TE / flash) attention keeps
  no T x T matrix, so there selective recompute changes nothing.
  none/selective: ``inflight x L_s x A x T``; full (chunks of n layers): ``inflight x ceil(L_s/n) x 2hT/t'
  + n x A x T``. 1F1B keeps ``inflight = min(PP - stage, micro-batches)`` micro-batches on a stage.
* LM head + loss (last stage, one micro-batch; :func:`lm_head_bytes`), as train.fused_lm_head says the trainer
  runs it (srpo_mcore/train/loss.py), ``b`` = bytes(params_dtype), Triton kernels (what ``kernel_backend: auto``
  picks on a GPU): logits path (Megatron's output layer, then the loss kernels on its logits): two [T, V/t]
  buffers in ``b`` at a time (the logits and GPTModel's transposed copy in the forward; the logits kept for
  backward and their gradient in the backward): ``2 b T V/t``. Fused LM head (kernels/fused_linear_logprobs.py,
  never materialises [T, V/t]): one logits chunk of ``min(256 MiB, b T V/t)``, the fp32 hidden-state gradient
  accumulator ``4 T h`` and, with sequence parallelism, the gathered hidden states ``b T h``. Both add the output
  weight's gradient ``b h V/t`` before DDP adds it to the fp32 buffer. ``kernel_backend: torch`` computes the
  log-probs in checkpointed 1024-token chunks instead: ``k x 4 x 1024 x V/t`` of fp32 temporaries
  (``TORCH_CHUNK_FP32_BUFFERS``: k = 5 on the logits path, 6 on the fused one, where they replace the chunk).
* vLLM weights: (P_total - norms) / rollout TP + norms, in the engine dtype.
* KV cache per token per GPU: ``2 [K,V] x layers x (g / rollout TP) x d x bytes``. The whole step needs
  ``prompts_per_step x samples_per_prompt / rollout DP`` sequences of ``prompt + response`` tokens per engine;
  what does not fit at once is generated in waves (reported, not an error). One full-length sequence must fit.
* vLLM forward activations (profile run): ``B (3F / rollout TP + 4h) x bytes`` (fc1 output, SwiGLU output and
  a few hidden-sized buffers) for B = max_num_batched_tokens, plus
  sampler logits ``2 x 4 x max_num_seqs x V``; CUDA graphs (when not enforce_eager) a flat allowance.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from srpo_kernels.backends import TORCH_TOKEN_CHUNK

from srpo_mcore.config import ConfigError, SRPOConfig, validate_world_size
from srpo_mcore.config.model import DTYPE_BYTES, ModelConfig

GIB = 1024**3
MIB = 1024**2
# An H100 SXM 80GB reports 81,559 MiB of device memory (nvidia-smi, torch.cuda.mem_get_info).
H100_80GB_BYTES = 81_559 * MIB
# How many fp32 [TORCH_TOKEN_CHUNK, V/t] temporaries the torch kernel backend holds at once, per path (rounded up
# from benchmarks/lm_head_memory.py on CPU at the Qwen2.5-0.5B head, 8192 tokens: 4.4 and 5.5, docs/benchmarks.md).
TORCH_CHUNK_FP32_BUFFERS = {"logits": 5, "fused": 6}

EXIT_OK, EXIT_DOES_NOT_FIT, EXIT_INVALID_LAYOUT = 0, 1, 2
ROW_ORDER = ("trainer weights", "grad buffer (fp32)", "optimizer state", "activations", "LM head + loss",
             "vLLM weights",
             "vLLM activations", "vLLM KV cache", "vLLM CUDA graphs", "weight-sync buckets",
             "runtime (CUDA, NCCL, workspaces)")


@dataclass(frozen=True)
class PlannerOptions:
    """Assumptions the config does not (yet) carry. Each is printed with the plan."""

    gpu_memory_bytes: int = H100_80GB_BYTES
    runtime_overhead_bytes: int = 3 * GIB  # CUDA context, cuBLAS workspaces, NCCL buffers of all groups, slack
    fused_chunk_bytes: int = 256 * MIB  # kernels/fused_linear_logprobs.py: one [T, C] logits chunk
    vllm_max_num_batched_tokens: int = 8192
    vllm_max_num_seqs: int = 1024
    vllm_cuda_graph_bytes: int = 1 * GIB  # only when rollout.enforce_eager is false
    headroom_warning_fraction: float = 0.05


# ----------------------------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class ParamCount:
    """Parameters of a Qwen2 decoder by part. ``layer_norms`` are the two RMSNorm weights of one layer."""

    layer: int
    layer_norms: int
    num_layers: int
    embedding: int
    output: int  # 0 when tied to the embedding
    final_norm: int

    @property
    def total(self) -> int:
        return self.num_layers * self.layer + self.embedding + self.output + self.final_norm

    @property
    def replicated(self) -> int:
        """Parameters every TP rank holds whole (the norms)."""
        return self.num_layers * self.layer_norms + self.final_norm


def count_parameters(model: ModelConfig) -> ParamCount:
    h, d = model.hidden_size, model.head_dim
    qkv_out = (model.num_attention_heads + 2 * model.num_query_groups) * d
    qkv = h * qkv_out + (qkv_out if model.add_qkv_bias else 0)
    proj = model.num_attention_heads * d * h
    mlp = 3 * h * model.ffn_hidden_size  # gate, up (fused as fc1) and down
    embedding = model.padded_vocab_size * h
    return ParamCount(layer=qkv + proj + mlp + 2 * h, layer_norms=2 * h, num_layers=model.num_layers,
                      embedding=embedding, output=0 if model.tie_word_embeddings else embedding, final_norm=h)


def stage_parameters(params: ParamCount, tp: int, pp: int, stage: int) -> int:
    """Parameters on one rank of pipeline stage ``stage``: its layers, plus the embedding (first stage) and the
    final norm and output layer (last stage; with tied embeddings and PP > 1 Megatron keeps a copy there)."""
    per_layer = (params.layer - params.layer_norms) // tp + params.layer_norms
    n = params.num_layers // pp * per_layer
    if stage == 0:
        n += params.embedding // tp
    if stage == pp - 1:
        n += params.final_norm
        if params.output:
            n += params.output // tp
        elif pp > 1:
            n += params.embedding // tp
    return n


# ----------------------------------------------------------------------------------------------- activations


def layer_activation_bytes_per_token(model: ModelConfig, tp: int, sequence_parallel: bool,
                                     micro_batch_tokens: int, materialised_attention: bool) -> float:
    """Bytes one transformer layer keeps for backward, per token of the micro-batch (see module docstring)."""
    h, f, kv = model.hidden_size, model.ffn_hidden_size, model.num_query_groups * model.head_dim
    split = (2 * h + 4 * kv + 2 * h + 4 * f + 2 * f) / tp
    norms_and_inputs = 8 * h / (tp if sequence_parallel else 1)
    scores = 2 * model.num_attention_heads * micro_batch_tokens / tp if materialised_attention else 0.0
    return split + norms_and_inputs + scores


@dataclass
class StagePlan:
    stage: int
    params: int
    weights: int
    grads: int
    optimizer: int
    activations: int
    lm_head_logits_path: int
    lm_head_fused: int
    inflight: int


# ----------------------------------------------------------------------------------------------- the plan


@dataclass
class MemoryPlan:
    """Everything :func:`plan_memory` found; ``to_dict()`` is the JSON form."""

    model: str
    nodes: int
    gpus_per_node: int
    world_size: int
    gpu_memory_bytes: int
    tp: int
    pp: int
    dp: int
    rollout_tp: int
    rollout_dp: int
    total_params: int
    micro_batches_per_update: int
    worst_stage: StagePlan
    last_stage: StagePlan
    stage_train_bytes: dict[int, int]  # train-phase total of the first and the last pipeline stage
    phases: dict[str, dict[str, int]]
    kv_bytes_per_token: int
    kv_bytes_available: int
    kv_bytes_needed: int
    sequence_tokens: int
    sequences_per_engine: int
    concurrent_sequences: int
    waves: int
    options: PlannerOptions
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.problems

    def phase_total(self, phase: str) -> int:
        return sum(self.phases[phase].values())

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.phase_total)

    @property
    def peak_bytes(self) -> int:
        return self.phase_total(self.peak_phase)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.update(fits=self.fits, peak_phase=self.peak_phase, peak_bytes=self.peak_bytes,
                   phase_totals={p: self.phase_total(p) for p in self.phases})
        return out


def plan_memory(cfg: SRPOConfig, nodes: int, gpus_per_node: int,
                options: PlannerOptions | None = None) -> MemoryPlan:
    """Per-GPU memory plan of ``cfg`` on ``nodes x gpus_per_node`` GPUs. Raises ConfigError for a bad layout."""
    opt = options or PlannerOptions()
    if nodes < 1 or gpus_per_node < 1:
        raise ConfigError("--nodes", f"need at least one node and one GPU per node, got {nodes} x {gpus_per_node}")
    world = nodes * gpus_per_node
    dp = validate_world_size(cfg, world)
    m, par, tr, ro = cfg.model, cfg.parallel, cfg.train, cfg.rollout
    tp, pp, rtp = par.tensor_model_parallel_size, par.pipeline_model_parallel_size, ro.tensor_parallel_size
    params = count_parameters(m)
    seq_tokens = ro.max_prompt_length + ro.max_response_length
    sequences = tr.prompts_per_step * tr.samples_per_prompt

    # Worst case: every sequence at full length; the packer puts floor(T / seq) of them in a micro-batch.
    per_rank = math.ceil(sequences / (tr.mini_batches_per_step * dp))
    micro_batches = math.ceil(per_rank / max(1, tr.max_tokens_per_micro_batch // seq_tokens))
    stages = [_stage_plan(cfg, params, s, dp, micro_batches, opt) for s in sorted({0, pp - 1})]
    engine = _engine_plan(cfg, params, opt)
    by_stage = {s.stage: _phases(s, engine, cfg, opt) for s in stages}
    # The stage with the highest peak: if it fits, every stage fits in every phase.
    worst = max(stages, key=lambda s: max(sum(p.values()) for p in by_stage[s.stage].values()))

    rollout_dp = world // rtp
    per_engine = math.ceil(sequences / rollout_dp)
    concurrent = max(0, engine.kv_available) // (engine.kv_per_token * seq_tokens)
    plan = MemoryPlan(
        model=m.name, nodes=nodes, gpus_per_node=gpus_per_node, world_size=world,
        gpu_memory_bytes=opt.gpu_memory_bytes, tp=tp, pp=pp, dp=dp, rollout_tp=rtp, rollout_dp=rollout_dp,
        total_params=params.total, micro_batches_per_update=micro_batches, worst_stage=worst, last_stage=stages[-1],
        stage_train_bytes={s: sum(p["train"].values()) for s, p in by_stage.items()},
        phases=by_stage[worst.stage],
        kv_bytes_per_token=engine.kv_per_token, kv_bytes_available=engine.kv_available,
        kv_bytes_needed=per_engine * seq_tokens * engine.kv_per_token, sequence_tokens=seq_tokens,
        sequences_per_engine=per_engine, concurrent_sequences=concurrent,
        waves=math.ceil(per_engine / concurrent) if concurrent else 0, options=opt)
    _judge(plan, cfg, engine.budget)
    return plan


@dataclass(frozen=True)
class _Engine:
    """One vLLM worker's memory: its budget and how it splits."""

    budget: int
    weights: int
    activations: int
    cuda_graphs: int
    kv_available: int
    kv_per_token: int


def _engine_plan(cfg: SRPOConfig, params: ParamCount, opt: PlannerOptions) -> _Engine:
    m, ro = cfg.model, cfg.rollout
    rtp = ro.tensor_parallel_size
    eb = DTYPE_BYTES[m.params_dtype if ro.dtype == "auto" else ro.dtype]
    weights = ((params.total - params.replicated) // rtp + params.replicated) * eb
    activations = (opt.vllm_max_num_batched_tokens * (3 * m.ffn_hidden_size // rtp + 4 * m.hidden_size) * eb
                   + 2 * 4 * opt.vllm_max_num_seqs * m.padded_vocab_size)
    graphs = 0 if ro.enforce_eager else opt.vllm_cuda_graph_bytes
    budget = int(ro.gpu_memory_utilization * opt.gpu_memory_bytes)
    return _Engine(budget=budget, weights=weights, activations=activations, cuda_graphs=graphs,
                   kv_available=budget - weights - activations - graphs,
                   kv_per_token=2 * m.num_layers * (m.num_query_groups // rtp) * m.head_dim * eb)


def _phases(stage: StagePlan, engine: _Engine, cfg: SRPOConfig, opt: PlannerOptions) -> dict[str, dict[str, int]]:
    """Bytes by row in each phase, for one rank of ``stage`` (see the module docstring)."""
    ro = cfg.rollout
    trainer = {"trainer weights": stage.weights, "grad buffer (fp32)": stage.grads,
               "optimizer state": stage.optimizer}
    awake = {"vLLM weights": engine.weights, "vLLM activations": engine.activations,
             "vLLM CUDA graphs": engine.cuda_graphs, "vLLM KV cache": max(0, engine.kv_available)}
    asleep = {"vLLM CUDA graphs": engine.cuda_graphs} if ro.enable_sleep_mode else awake
    woken = {"vLLM weights": engine.weights, "vLLM CUDA graphs": engine.cuda_graphs} if ro.enable_sleep_mode else awake
    runtime = {"runtime (CUDA, NCCL, workspaces)": opt.runtime_overhead_bytes}
    head = stage.lm_head_fused if cfg.train.fused_lm_head else stage.lm_head_logits_path
    return {
        "train": {**trainer, "activations": stage.activations, "LM head + loss": head, **asleep, **runtime},
        "sync": {**trainer, **woken, "weight-sync buckets": 2 * ro.sync_bucket_mb * MIB, **runtime},
        "rollout": {**trainer, **awake, **runtime},
    }


def _stage_plan(cfg: SRPOConfig, params: ParamCount, stage: int, dp: int, micro_batches: int,
                opt: PlannerOptions) -> StagePlan:
    m, par = cfg.model, cfg.parallel
    tp, pp = par.tensor_model_parallel_size, par.pipeline_model_parallel_size
    n = stage_parameters(params, tp, pp, stage)
    sixteen_bit = DTYPE_BYTES[m.params_dtype] == 2
    optimizer = n * (12 if sixteen_bit else 8) // (dp if par.use_distributed_optimizer else 1)

    tokens = cfg.train.max_tokens_per_micro_batch
    sp_div = tp if par.sequence_parallel else 1
    materialised = m.transformer_impl == "local" and par.recompute_granularity != "selective"
    per_layer = layer_activation_bytes_per_token(m, tp, par.sequence_parallel, tokens, materialised) * tokens
    layers = m.num_layers // pp
    inflight = max(1, min(pp - stage, micro_batches))
    if par.recompute_granularity == "full":
        chunk = min(par.recompute_num_layers, layers)
        activations = inflight * math.ceil(layers / chunk) * 2 * m.hidden_size * tokens / sp_div + chunk * per_layer
    else:
        activations = inflight * layers * per_layer
    last = stage == pp - 1
    if last:  # final norm input and output-layer input of the one micro-batch in flight on the last stage
        activations += 4 * m.hidden_size * tokens / sp_div
    return StagePlan(
        stage=stage, params=n, weights=n * DTYPE_BYTES[m.params_dtype], grads=n * 4, optimizer=optimizer,
        activations=int(activations), inflight=inflight,
        lm_head_logits_path=lm_head_bytes(cfg, fused=False, chunk_bytes=opt.fused_chunk_bytes) if last else 0,
        lm_head_fused=lm_head_bytes(cfg, fused=True, chunk_bytes=opt.fused_chunk_bytes) if last else 0)


def lm_head_bytes(cfg: SRPOConfig, *, fused: bool, chunk_bytes: int = 256 * MIB) -> int:
    """Peak bytes of one micro-batch's LM head + log-probs + loss on the last stage (see the module docstring)."""
    m, par = cfg.model, cfg.parallel
    tp, tokens, h = par.tensor_model_parallel_size, cfg.train.max_tokens_per_micro_batch, m.hidden_size
    b, v_local = DTYPE_BYTES[m.params_dtype], m.padded_vocab_size // tp
    weight_grad = b * h * v_local
    torch_chunks = 0
    if cfg.train.kernel_backend == "torch":
        torch_chunks = TORCH_CHUNK_FP32_BUFFERS["fused" if fused else "logits"] * 4 * min(TORCH_TOKEN_CHUNK,
                                                                                          tokens) * v_local
    if fused:
        gathered = b * tokens * h if par.sequence_parallel and tp > 1 else 0
        chunk = torch_chunks or min(chunk_bytes, b * tokens * v_local)
        return chunk + 4 * tokens * h + gathered + weight_grad
    return 2 * b * tokens * v_local + torch_chunks + weight_grad


def _judge(plan: MemoryPlan, cfg: SRPOConfig, budget: int) -> None:
    """Fill ``plan.problems`` (the plan cannot run) and ``plan.warnings`` (it runs, but look)."""
    gpu, ro, par = plan.gpu_memory_bytes, cfg.rollout, cfg.parallel
    train, rollout = plan.phase_total("train"), plan.phase_total("rollout")
    if train > gpu:
        plan.problems.append(
            f"the train phase needs {_gib(train)} GiB per GPU (stage {plan.worst_stage.stage}) but the GPU has "
            f"{_gib(gpu)} GiB: raise parallel.tensor_model_parallel_size / pipeline_model_parallel_size, set "
            f"parallel.use_distributed_optimizer: true, parallel.recompute_granularity: full, or lower "
            f"train.max_tokens_per_micro_batch" + ("" if ro.enable_sleep_mode else
                                                   f"; or set rollout.enable_sleep_mode: true (vLLM now keeps "
                                                   f"{_gib(budget)} GiB while the trainer trains)"))
    if plan.phase_total("sync") > gpu:
        plan.problems.append(f"the weight-sync phase needs {_gib(plan.phase_total('sync'))} GiB per GPU: the "
                             f"trainer state and vLLM's weights together exceed {_gib(gpu)} GiB; raise "
                             f"rollout.tensor_parallel_size or the trainer's TP/PP")
    if rollout > gpu:
        room = gpu - (rollout - budget)
        plan.problems.append(
            f"the rollout phase needs {_gib(rollout)} GiB per GPU: vLLM's budget (rollout.gpu_memory_utilization="
            f"{ro.gpu_memory_utilization} = {_gib(budget)} GiB) plus the resident trainer state and runtime exceed "
            f"{_gib(gpu)} GiB; vLLM would refuse to start. Set rollout.gpu_memory_utilization <= "
            f"{max(0.0, math.floor(room / gpu * 100) / 100):.2f} or shrink the trainer state")
    one_sequence = plan.sequence_tokens * plan.kv_bytes_per_token
    if plan.kv_bytes_available < one_sequence:
        plan.problems.append(
            f"vLLM's KV cache ({_gib(max(0, plan.kv_bytes_available))} GiB per GPU after its weights and "
            f"activations) cannot hold one {plan.sequence_tokens}-token sequence ({_gib(one_sequence)} GiB): raise "
            f"rollout.gpu_memory_utilization or rollout.tensor_parallel_size, or shorten rollout.max_response_length")
    elif plan.concurrent_sequences < cfg.train.samples_per_prompt:
        plan.warnings.append(
            f"only {plan.concurrent_sequences} full-length sequences fit in the KV cache at once, fewer than one "
            f"group of {cfg.train.samples_per_prompt}: generation will be slow")
    if plan.fits and plan.waves > 1:
        plan.warnings.append(
            f"at full length the {plan.sequences_per_engine} sequences per engine need {plan.waves} waves of "
            f"{plan.concurrent_sequences} (typical responses are shorter, so fewer)")
    headroom = gpu - plan.peak_bytes
    if plan.fits and headroom < plan.options.headroom_warning_fraction * gpu:
        plan.warnings.append(f"only {_gib(headroom)} GiB headroom in the {plan.peak_phase} phase: allocator "
                             f"fragmentation may push it over")
    if ro.tensor_parallel_size > plan.gpus_per_node:
        plan.warnings.append(f"rollout TP={ro.tensor_parallel_size} spans nodes (gpus_per_node="
                             f"{plan.gpus_per_node}): decode all-reduces would cross the network")
    if par.tensor_model_parallel_size > plan.gpus_per_node:
        plan.warnings.append(f"trainer TP={par.tensor_model_parallel_size} spans nodes: keep TP within NVLink")


def _gib(n: float) -> str:
    """Bytes as GiB with one decimal (the unit of every message and table row)."""
    return f"{n / GIB:.1f}"
