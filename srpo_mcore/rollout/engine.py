"""vLLM rollouts inside the torchrun job: one vLLM worker per rank through vLLM's external-launcher executor.

Layout. Every rank builds the same ``LLM(..., distributed_executor_backend="external_launcher",
tensor_parallel_size=T)``; vLLM reuses the job's default process group and adds its own groups. Consecutive ranks
``[e*T, (e+1)*T)`` form rollout engine ``e`` (vLLM's implicit outer data-parallel dimension: world / T engines,
each independent; no lock-step between engines). Rollout TP is independent of the trainer's TP/PP.

Prompts in, samples out. :meth:`RolloutEngine.generate` takes the *global* prompt list, identical on every rank
(checked with a digest: ranks of one engine must schedule identical requests, or vLLM's TP collectives diverge).
Engine ``e`` generates the contiguous block ``prompts[e*P//E:(e+1)*P//E]``; every request carries an explicit seed
(derived from ``(seed, global prompt index)``, or given per prompt), identical on the ranks of an engine (they
sample from their own RNG, so without it they would silently draw different tokens). Finished requests stream
out of vLLM's step loop (:func:`stream_finished`), and an ``on_prompt_done`` callback sees each prompt's samples
while the others still generate (the trainer starts scoring them there). The samples of all engines are then gathered to
every rank as packed tensors (packed.py: one broadcast per engine over a gloo group, no pickled token lists) and
returned in global order: prompt-major, then sample index. Each trainer rank picks its own data-parallel slice
from that list. The ranks of each engine compare a digest of their packed outputs first and raise
:class:`RolloutDivergenceError` if they differ.

Log-probs are vLLM's ``processed_logprobs``: log-softmax of the logits after temperature (and top-p masking),
the quantity the trainer's recomputation must match (with ``top_p < 1`` the trainer must apply the same
truncation); the default ``raw_logprobs`` ignores temperature.

The engine starts from a config-only model directory with ``load_format="dummy"`` (random weights) and refuses to
generate before the first weight sync (:mod:`srpo_mcore.rollout.weight_sync`) marks real weights loaded.

GPU (written against vLLM's documented API; not run here): with ``rollout.enable_sleep_mode`` the trainer puts
the engine to sleep when generation is over (:meth:`RolloutEngine.sleep`, ``sleep(level=rollout.sleep_level)``)
and the next sync wakes it in two steps: ``wake_up(tags=["weights"])`` -> load -> the trainer frees its memory ->
``wake_up(tags=["kv_cache"])``. The vLLM-CPU build does not support sleep mode (its ``sleep()`` is a no-op and
generating "asleep" blocks), so these calls are skipped there.

A tied output layer (Qwen2.5 <= 3B) is refreshed after every sync (``vllm_cpu.refresh_tied_output_layer``).

CPU specifics (collected in vllm_cpu.py; chosen by ``srpo_mcore.platform.has_cuda()``): the engine's KV cache is
``rollout.cpu_kv_cache_gib`` (``kv_cache_memory_bytes``); its worker class (cpu_worker.py) makes vLLM-CPU's
shared-memory segment names unique to the job, so concurrent jobs on one machine do not collide; vLLM binds this process's OpenMP threads to the cores chosen in env.py (the trainer's torch ops in
this process run there too) and replaces ``torch.set_num_threads`` with a no-op.

Shutdown. vLLM's engine shutdown destroys the default process group. :meth:`RolloutEngine.shutdown` can keep it
(``keep_default_group=True``, for tearing an engine down mid-run); :func:`shutdown_job` is the end-of-job order:
Megatron's ``destroy_model_parallel()``, the engine, then ``destroy_process_group()`` only if still initialised.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import json
import logging
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from srpo_mcore import platform
from srpo_mcore.config.model import ModelConfig
from srpo_mcore.config.rollout import RolloutConfig
from srpo_mcore.model.dtypes import dtype_name, torch_dtype
from srpo_mcore.rollout import env as rollout_env
from srpo_mcore.rollout import vllm_cpu
from srpo_mcore.rollout.packed import RaggedRows, RolloutDivergenceError, gather_from_engines

logger = logging.getLogger(__name__)

FINISH_REASONS = ("stop", "length")  # vLLM's reasons a rollout may end with; others (abort, error) raise


@dataclass(frozen=True)
class SamplingOptions:
    """Per-call sampling settings (the rest of the engine's behaviour comes from :class:`RolloutConfig`)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop_token_ids: tuple[int, ...] = ()

    @classmethod
    def from_config(cls, cfg: RolloutConfig, stop_token_ids: Sequence[int] = ()) -> SamplingOptions:
        return cls(max_tokens=cfg.max_response_length, temperature=cfg.temperature, top_p=cfg.top_p,
                   stop_token_ids=tuple(stop_token_ids))


@dataclass(frozen=True, eq=False)
class RolloutSample:
    """One sampled response.

    ``response_token_ids`` (int32) and ``logprobs`` (float32) are 1-D tensors: views into the packed buffer its
    engine sent (packed.py), so a rank holding every sample of a step holds ~8 bytes per token, not Python
    numbers; ``.tolist()`` where Python values are needed (decoding).
    ``logprobs[i]`` is vLLM's processed log-prob of ``response_token_ids[i]`` (after temperature and top-p).
    ``finish_reason`` is ``"stop"`` (a stop token was sampled; it is the last response token) or ``"length"``
    (cut at ``max_tokens``). ``weights_version`` is the engine's weight version (number of completed syncs)."""

    prompt_index: int
    sample_index: int
    prompt_token_ids: Sequence[int]
    response_token_ids: torch.Tensor
    logprobs: torch.Tensor
    finish_reason: str
    weights_version: int

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def resolve_rollout_dtype(cfg: RolloutConfig, model_cfg: ModelConfig) -> torch.dtype:
    """``rollout.dtype``, with ``auto`` meaning the trainer's parameter dtype."""
    name = model_cfg.params_dtype if cfg.dtype == "auto" else cfg.dtype
    return torch_dtype(name)


def engine_layout(world_size: int, rank: int, rollout_tp: int) -> tuple[int, int, list[int]]:
    """``(engine index, number of engines, ranks of this engine)`` for consecutive TP groups of ``rollout_tp``."""
    if world_size % rollout_tp:
        raise ValueError(f"world size {world_size} is not divisible by rollout.tensor_parallel_size={rollout_tp}")
    index = rank // rollout_tp
    return index, world_size // rollout_tp, list(range(index * rollout_tp, (index + 1) * rollout_tp))


def shard_bounds(n_items: int, n_shards: int, shard: int) -> tuple[int, int]:
    """Contiguous, balanced ``[lo, hi)`` block of ``n_items`` for ``shard`` of ``n_shards``."""
    return shard * n_items // n_shards, (shard + 1) * n_items // n_shards


PromptDone = Callable[[int, list["RolloutSample"]], None]  # (prompt index, its n samples), see generate()


def request_seed(seed: int, prompt_index: int, n: int) -> int:
    """Seed of a prompt's request: sample ``j`` of it uses ``request_seed + j`` (vLLM's rule for ``n > 1``).
    A hash of ``(seed, prompt_index)``, so it does not depend on how prompts are split over engines."""
    digest = hashlib.blake2b(f"{seed}:{prompt_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (2**31 - n)


def request_seeds(seed: int | Sequence[int], n_prompts: int, n: int) -> list[int]:
    """Every prompt's request seed: derived from one ``seed`` (:func:`request_seed`), or given one per prompt."""
    if not isinstance(seed, Sequence):
        return [request_seed(int(seed), i, n) for i in range(n_prompts)]
    seeds = [int(s) for s in seed]
    if len(seeds) != n_prompts:
        raise ValueError(f"{len(seeds)} request seeds for {n_prompts} prompts")
    bad = [s for s in seeds if not 0 <= s < 2**31 - n]
    if bad:
        raise ValueError(f"request seeds {bad[:3]} are outside [0, 2**31 - n) (sample j uses seed + j)")
    return seeds


def stream_finished(llm, requests: list[dict], params: list) -> Iterator[tuple[int, Any]]:
    """``(request index, RequestOutput)`` of ``requests`` as vLLM finishes them (finishing order), from one
    ``LLM``: what ``LLM.generate`` does (``enqueue`` then ``llm_engine.step()`` until nothing is unfinished), with
    each finished request handed out at once instead of all at the end. The engine must hold no other requests.

    vLLM reports outputs under the id ``LLM`` gave the request (a counter), while ``enqueue`` returns the
    engine-internal id, that id plus ``-<8 random characters>`` (``InputProcessor.assign_request_id``); both are
    checked, so a vLLM that changes either fails here loudly instead of mixing prompts up."""
    engine = llm.llm_engine
    if engine.has_unfinished_requests():
        raise RuntimeError("the vLLM engine still holds unfinished requests from an earlier call")
    internal = llm.enqueue(requests, params, use_tqdm=False)
    index = {rid.rsplit("-", 1)[0]: k for k, rid in enumerate(internal)}
    if len(index) != len(requests):
        raise RuntimeError(f"vLLM request ids {internal[:3]}... do not map one to one onto the requests")
    try:
        while engine.has_unfinished_requests():
            for out in engine.step():
                if out.finished:
                    k = index.pop(out.request_id, None)
                    if k is None:
                        raise RuntimeError(f"vLLM finished request {out.request_id!r}, not one of this call's")
                    yield k, out
        if index:
            raise RuntimeError(f"vLLM stopped with {len(index)} of {len(requests)} requests unfinished")
    finally:
        if index:  # the consumer raised (or the engine did): leave no request behind for the next call
            engine.abort_request(list(index))


def write_engine_model_dir(model_cfg: ModelConfig, root: Path, dtype: str) -> Path:
    """A config-only HF model directory for the engine (weights come from the first sync)."""
    from srpo_mcore.model.hf_checkpoint import hf_config_dict

    path = root / f"model-{model_cfg.name}-rank{dist.get_rank() if dist.is_initialized() else 0}"
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "config.json.tmp"
    tmp.write_text(json.dumps(hf_config_dict(model_cfg, dtype), indent=2))
    os.replace(tmp, path / "config.json")
    return path


def engine_args(cfg: RolloutConfig, model_dir: Path, dtype: str, seed: int, *, on_gpu: bool) -> dict:
    """The keyword arguments of this rank's ``vllm.LLM`` (tests check them against vLLM's ``EngineArgs``)."""
    platform_args = ({"gpu_memory_utilization": cfg.gpu_memory_utilization, "enable_sleep_mode": cfg.enable_sleep_mode}
                     if on_gpu else vllm_cpu.engine_args(cfg))
    return dict(
        model=str(model_dir),
        skip_tokenizer_init=True,  # token ids in and out; the trainer owns the tokenizer
        tensor_parallel_size=cfg.tensor_parallel_size,
        distributed_executor_backend="external_launcher",
        dtype=dtype,
        load_format="dummy",
        seed=seed,
        enforce_eager=cfg.enforce_eager,
        max_model_len=cfg.max_prompt_length + cfg.max_response_length,
        logprobs_mode="processed_logprobs",
        enable_prefix_caching=True,
        **platform_args,
    )


def _digest(obj) -> str:
    return hashlib.sha256(pickle.dumps(obj, protocol=4)).hexdigest()


class RolloutEngine:
    """This rank's vLLM worker (see the module docstring). Construction is collective over the whole job."""

    def __init__(self, cfg: RolloutConfig, model_cfg: ModelConfig, *, seed: int, dtype: torch.dtype):
        if not dist.is_initialized():
            raise RuntimeError("RolloutEngine needs the torchrun process group (call init_process_group first)")
        root = rollout_env.configured_root()
        if root is None:
            raise RuntimeError("call srpo_mcore.rollout.env.configure_vllm_environment(run_dir) at the entry point "
                               "before building the rollout engine")
        self.cfg = cfg
        self.model_cfg = model_cfg
        self.dtype = dtype
        self.on_gpu = platform.has_cuda()
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.engine_index, self.num_engines, self.group_ranks = engine_layout(
            self.world_size, self.rank, cfg.tensor_parallel_size)
        self.tp_rank = self.rank - self.group_ranks[0]
        self.weights_version = 0
        self.has_weights = False  # dummy weights until the first sync
        self._asleep = False
        if not self.on_gpu:
            vllm_cpu.check_model(model_cfg)
        # Control-plane group for object gathers (gloo: no device copies on GPU).
        self._ctrl = dist.new_group(backend="gloo")
        model_dir = write_engine_model_dir(model_cfg, root, dtype_name(dtype))
        self.llm = self._start(model_dir, seed)
        self._check_tp_group()

    # ---------------------------------------------------------------------------------------------- start-up

    def _start(self, model_dir: Path, seed: int):
        from vllm import LLM

        if not self.on_gpu:
            vllm_cpu.before_start(self._ctrl)
        with vllm_cpu.restored_environment("LOCAL_WORLD_SIZE", "LD_PRELOAD"):
            return LLM(**engine_args(self.cfg, model_dir, dtype_name(self.dtype), seed, on_gpu=self.on_gpu))

    def _check_tp_group(self) -> None:
        from vllm.distributed.parallel_state import get_tp_group

        ranks = list(get_tp_group().ranks)
        if ranks != self.group_ranks:
            raise RuntimeError(f"vLLM formed TP group {ranks} on rank {self.rank}, expected {self.group_ranks}")

    # -------------------------------------------------------------------------------------------- generation

    def generate(self, prompts: Sequence[Sequence[int]], n: int, sampling: SamplingOptions, *,
                 seed: int | Sequence[int], on_prompt_done: PromptDone | None = None) -> list[RolloutSample]:
        """Sample ``n`` responses for every prompt (collective; identical arguments on every rank).

        ``seed``: one int (prompt ``i``'s request seed is ``request_seed(seed, i, n)``) or one request seed per
        prompt (each in ``[0, 2**31 - n)``; sample ``j`` uses ``seed + j``).
        ``on_prompt_done(prompt_index, samples)``: called on this rank, while the engine goes on generating, for
        each prompt of this rank's engine as soon as its ``n`` samples are finished (in finishing order; the
        samples are local tensors, equal to the ones returned). It must not call collectives.

        Returns all ``len(prompts) * n`` samples on every rank, ordered by (prompt index, sample index)."""
        self._check_ready()
        if not 0 < sampling.max_tokens <= self.cfg.max_response_length:
            raise ValueError(f"max_tokens={sampling.max_tokens}; rollout.max_response_length="
                             f"{self.cfg.max_response_length}")
        token_prompts = [tuple(int(t) for t in p) for p in prompts]
        for i, p in enumerate(token_prompts):
            if not 0 < len(p) <= self.cfg.max_prompt_length:
                raise ValueError(f"prompt {i} has {len(p)} tokens; rollout.max_prompt_length="
                                 f"{self.cfg.max_prompt_length}")
        seeds = request_seeds(seed, len(token_prompts), n)
        self._check_same_everywhere(("generate", token_prompts, n, sampling, seeds))
        lo, hi = shard_bounds(len(token_prompts), self.num_engines, self.engine_index)
        meta, token_ids, logprobs = [], [], []
        if hi > lo:
            params = [self._sampling_params(sampling, n, seeds[i]) for i in range(lo, hi)]
            requests = [{"prompt_token_ids": list(token_prompts[i])} for i in range(lo, hi)]
            done: dict[int, list[tuple[str, list[int], list[float]]]] = {}
            for k, out in stream_finished(self.llm, requests, params):
                i = lo + k
                done[i] = [self._completion(i, j, c) for j, c in enumerate(out.outputs)]
                if on_prompt_done is not None:
                    on_prompt_done(i, [self._local_sample(token_prompts[i], i, j, *row)
                                       for j, row in enumerate(done[i])])
            for i in range(lo, hi):
                for j, (finish, ids, lps) in enumerate(done[i]):
                    meta.append((i, j, FINISH_REASONS.index(finish), self.weights_version))
                    token_ids.append(ids)
                    logprobs.append(lps)
        local = RaggedRows.build(meta, logprobs, token_ids, columns=4)
        samples = [RolloutSample(prompt_index=i, sample_index=j, prompt_token_ids=token_prompts[i], response_token_ids=ids,
                                 logprobs=lps, finish_reason=FINISH_REASONS[finish], weights_version=version)
                   for part in self._gather_engine_results(local)
                   for (i, j, finish, version), ids, lps in part.views()]
        return sorted(samples, key=lambda s: (s.prompt_index, s.sample_index))

    @staticmethod
    def _completion(i: int, j: int, completion) -> tuple[str, list[int], list[float]]:
        """``(finish reason, token ids, log-probs)`` of one of vLLM's completions (its finish reason checked)."""
        if completion.finish_reason not in FINISH_REASONS:
            raise RuntimeError(f"prompt {i} sample {j} finished with {completion.finish_reason!r}")
        lps = [step[tok].logprob for step, tok in zip(completion.logprobs, completion.token_ids)]
        return completion.finish_reason, list(completion.token_ids), lps

    def _local_sample(self, prompt: tuple[int, ...], i: int, j: int, finish: str, ids: list[int],
                      lps: list[float]) -> RolloutSample:
        """A finished completion as a :class:`RolloutSample` of its own tensors (what ``on_prompt_done`` gets)."""
        return RolloutSample(prompt_index=i, sample_index=j, prompt_token_ids=prompt,
                             response_token_ids=torch.tensor(ids, dtype=torch.int32),
                             logprobs=torch.tensor(lps, dtype=torch.float32), finish_reason=finish,
                             weights_version=self.weights_version)

    def prompt_logprobs(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        """vLLM's log p(token t | tokens < t) for t = 1..L-1 of each fixed sequence (collective, like
        :meth:`generate`). Temperature does not apply to prompt log-probs."""
        from vllm import SamplingParams

        self._check_ready()
        sequences = [tuple(int(t) for t in s) for s in sequences]
        self._check_same_everywhere(("prompt_logprobs", sequences))
        lo, hi = shard_bounds(len(sequences), self.num_engines, self.engine_index)
        meta, logprobs = [], []
        if hi > lo:
            params = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False, seed=0)
            outputs = self.llm.generate([{"prompt_token_ids": list(sequences[i])} for i in range(lo, hi)], params,
                                        use_tqdm=False)
            for i, out in zip(range(lo, hi), outputs):
                seq = sequences[i]
                meta.append((i,))
                logprobs.append([step[tok].logprob for step, tok in zip(out.prompt_logprobs[1:], seq[1:])])
        gathered = self._gather_engine_results(RaggedRows.build(meta, logprobs, columns=1))
        return [list(lps) for (_,), _, lps in sorted((row for part in gathered for row in part.rows()),
                                                    key=lambda row: row[0])]

    def _sampling_params(self, s: SamplingOptions, n: int, seed: int):
        from vllm import SamplingParams

        return SamplingParams(n=n, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=seed,
                              logprobs=0, stop_token_ids=list(s.stop_token_ids), detokenize=False)

    def _check_ready(self) -> None:
        if self.llm is None:
            raise RuntimeError("the rollout engine was shut down")
        if not self.has_weights:
            raise RuntimeError("the rollout engine holds random start-up weights: run a weight sync first")
        if self._asleep:
            raise RuntimeError("the rollout engine is asleep: run a weight sync (it wakes the engine) first")

    def _check_same_everywhere(self, request) -> None:
        digests = [None] * self.world_size
        dist.all_gather_object(digests, _digest(request), group=self._ctrl)
        if len(set(digests)) != 1:
            odd = [r for r, d in enumerate(digests) if d != digests[0]]
            raise RolloutDivergenceError(f"ranks {odd} were given different rollout requests than rank 0; every rank "
                                         "must pass the same global prompt list, n, sampling options and seed")

    def _gather_engine_results(self, local: RaggedRows) -> list[RaggedRows]:
        """Every engine's rows on every rank; also checks that the ranks of each engine produced the same."""
        tp = self.cfg.tensor_parallel_size
        engine_ranks = [list(range(e * tp, (e + 1) * tp)) for e in range(self.num_engines)]
        return gather_from_engines(local, engine_index=self.engine_index, engine_ranks=engine_ranks,
                                   group=self._ctrl)

    # --------------------------------------------------------------------------------- weights and memory

    def load_weights(self, named_tensors: list[tuple[str, torch.Tensor]]) -> None:
        """Load HF-named, full (not TP-sharded) tensors in place. One call must carry every tensor of each vLLM
        layer it touches (q/k/v weight and bias together, gate and up together): vLLM reloads layer by layer and
        a layer with only part of its tensors is processed with garbage for the rest. The engine runs in this
        process (external launcher), so the tensors are passed by reference, not serialised."""
        if self.llm is None:
            raise RuntimeError("the rollout engine was shut down")
        self.llm.collective_rpc("reload_weights",
                                kwargs={"weights_iterator": named_tensors, "is_checkpoint_format": True})

    def finish_weight_update(self, version: int) -> None:
        """After the last push of a sync: refresh a tied output layer, drop KV blocks computed with the old
        weights, and record the version."""
        if self.model_cfg.tie_word_embeddings:
            refreshed = self.llm.apply_model(vllm_cpu.refresh_tied_output_layer)
            if not all(refreshed):
                raise RuntimeError("the model ties its embeddings but vLLM's lm_head does not share the embedding "
                                   "weight; the output layer would stay stale after this sync")
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM refused to reset its prefix cache (requests still running during a weight sync)")
        self.weights_version = version
        self.has_weights = True

    def sleep(self) -> None:
        """GPU with sleep mode: release the KV cache (and the weights at sleep_level 2). No-op on CPU."""
        if self.on_gpu and self.cfg.enable_sleep_mode and not self._asleep:
            self.llm.sleep(level=self.cfg.sleep_level)
            self._asleep = True

    def wake_weights(self) -> None:
        """GPU with sleep mode: re-allocate the weights (before a sync loads them). No-op on CPU."""
        if self._asleep:
            self.llm.wake_up(tags=["weights"])

    def wake_kv_cache(self) -> None:
        """GPU with sleep mode: re-allocate the KV cache (after the trainer freed its memory). No-op on CPU."""
        if self._asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self._asleep = False

    # ----------------------------------------------------------------------------------------------- shutdown

    def shutdown(self, *, keep_default_group: bool = True) -> None:
        """Shut the engine down (collective). With ``keep_default_group`` the job's default process group
        survives (vLLM's shutdown would destroy it), so the trainer can go on or start another engine."""
        if self.llm is None:
            return
        import vllm.distributed.parallel_state as vllm_ps

        original = vllm_ps.destroy_distributed_environment

        def destroy_vllm_world_only():
            if vllm_ps._WORLD is not None:
                vllm_ps._WORLD.destroy()
            vllm_ps._WORLD = None
            vllm_ps._NODE_COUNT = None

        if keep_default_group:
            vllm_ps.destroy_distributed_environment = destroy_vllm_world_only
        try:
            self.llm.llm_engine.engine_core.shutdown()
        finally:
            vllm_ps.destroy_distributed_environment = original
        self.llm = None
        gc.collect()
        return_freed_memory_to_os()
        if not self.on_gpu:
            vllm_cpu.after_shutdown()  # so a new engine over the same ranks can create them again
        if dist.is_initialized():
            dist.barrier(group=self._ctrl)  # every rank unlinked before anyone starts a new engine
            dist.destroy_process_group(self._ctrl)


def return_freed_memory_to_os() -> None:
    """glibc keeps freed heap memory (most per-layer tensors are below its 32 MiB mmap threshold) in its arenas;
    after an engine shut down that is its whole model and KV cache. Hand it back so a next engine (or the trainer)
    does not stack on top of it."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def shutdown_job(engine: RolloutEngine | None) -> None:
    """End of a job that ran Megatron and vLLM: Megatron's groups, the engine, then the default group (vLLM's
    shutdown usually destroyed it already)."""
    from srpo_mcore.distributed import destroy_model_parallel

    destroy_model_parallel()
    if engine is not None:
        engine.shutdown(keep_default_group=False)
    if dist.is_initialized():
        dist.destroy_process_group()
