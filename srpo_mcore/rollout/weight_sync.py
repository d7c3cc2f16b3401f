"""Megatron -> vLLM weight sync, the RL loop's one back-edge.

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
import mmap
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from srpo_mcore import platform
from srpo_mcore.config.model import ModelConfig
from srpo_mcore.config.rollout import RolloutConfig
from srpo_mcore.distributed import ParallelState
from srpo_mcore.model.hf_checkpoint import layer_offset
from srpo_mcore.model.hf_layout import ParamMap, expected_hf_shape, param_map, to_hf_tensors
from srpo_mcore.rollout.env import SYNC_SHM_PREFIX
from srpo_mcore.rollout.layout import scatter_shard

logger = logging.getLogger(__name__)

NamedTensors = list[tuple[str, torch.Tensor]]
_VLLM_FUSED = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj",
               "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj"}
_ALIGN = 64  # byte alignment of tensors inside the shared staging buffer


class WeightSyncError(RuntimeError):
    """A weight sync failed (a peer died, hung or never joined, or vLLM refused the weights)."""


def vllm_layer_of(hf_name: str) -> str:
    """The vLLM module an HF tensor loads into (``...self_attn.q_proj.bias`` -> ``...self_attn.qkv_proj``)."""
    module = hf_name.rpartition(".")[0]
    parent, _, leaf = module.rpartition(".")
    return f"{parent}.{_VLLM_FUSED.get(leaf, leaf)}"


# -------------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class ParamSlot:
    """One Megatron parameter of one PP stage (shapes are the same on every TP rank of that stage)."""

    stage: int
    name: str
    layer_offset: int
    local_shape: tuple[int, ...]
    hf_shapes: tuple[tuple[int, ...], ...]

    @property
    def param_map(self) -> ParamMap:
        return param_map(self.name, self.layer_offset)

    @property
    def local_numel(self) -> int:
        return _numel(self.local_shape)

    @property
    def hf_numel(self) -> int:
        return sum(_numel(s) for s in self.hf_shapes)


@dataclass(frozen=True)
class Bucket:
    """Whole vLLM layers of one PP stage, moved and loaded together."""

    index: int
    stage: int
    slots: tuple[ParamSlot, ...]

    @property
    def hf_numel(self) -> int:
        return sum(s.hf_numel for s in self.slots)

    @property
    def local_numel(self) -> int:
        return sum(s.local_numel for s in self.slots)

    def describe(self) -> str:
        names = [n for s in self.slots for n in s.param_map.hf_names]
        return f"bucket {self.index} (PP stage {self.stage}: {names[0]} .. {names[-1]}, {len(names)} tensors)"


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def unwrap_model(model_chunk: torch.nn.Module) -> torch.nn.Module:
    """The GPTModel inside Megatron DDP / Float16Module wrappers."""
    while hasattr(model_chunk, "module"):
        model_chunk = model_chunk.module
    return model_chunk


def local_slots(model_chunk: torch.nn.Module, model: ModelConfig, stage: int) -> list[ParamSlot]:
    """This stage's parameters in ``named_parameters`` order (a tied output layer is skipped: vLLM ties it)."""
    offset = layer_offset(model_chunk)
    slots = []
    for name, param in model_chunk.named_parameters():
        pm = param_map(name, offset)
        if pm.kind == "lm_head" and model.tie_word_embeddings:
            continue
        slots.append(ParamSlot(stage, name, offset, tuple(param.shape),
                               tuple(expected_hf_shape(n, model) for n in pm.hf_names)))
    return slots


def plan_buckets(slots: list[ParamSlot], bucket_numel: int) -> list[Bucket]:
    """Pack whole vLLM layers into buckets of at most ``bucket_numel`` HF elements, one PP stage per bucket."""
    layers: dict[tuple[int, str], list[ParamSlot]] = {}
    for slot in slots:
        layers.setdefault((slot.stage, vllm_layer_of(slot.param_map.hf_names[0])), []).append(slot)
    buckets: list[Bucket] = []
    current: list[ParamSlot] = []
    for (stage, _), layer in layers.items():
        size = sum(s.hf_numel for s in layer)
        if current and (current[0].stage != stage or sum(s.hf_numel for s in current) + size > bucket_numel):
            buckets.append(Bucket(len(buckets), current[0].stage, tuple(current)))
            current = []
        current.extend(layer)
    if current:
        buckets.append(Bucket(len(buckets), current[0].stage, tuple(current)))
    return buckets


# --------------------------------------------------------------------------------------------- deadlines


class _Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> datetime.timedelta:
        remaining = self.seconds - self.elapsed()
        if remaining <= 0:
            raise TimeoutError(f"rollout.sync_timeout_s={self.seconds:g} s used up")
        return datetime.timedelta(seconds=remaining)

    def wait(self, work) -> None:
        if work is not None and not work.wait(timeout=self.left()):
            raise TimeoutError("collective did not complete in time")


# -------------------------------------------------------------------------------------------- transports


class CollectiveTransport:
    """TP all-gather on the owning stage, broadcast over PP, ``to_hf_tensors`` on every rank."""

    name = "collective"

    def __init__(self, state: ParallelState, model: ModelConfig, dtype: torch.dtype, timeout: datetime.timedelta,
                 ctrl) -> None:
        self.state, self.model, self.dtype = state, model, dtype
        self.tp_group = _clone_groups(state.tp_group, state.tp_size, timeout, ctrl)
        self.pp_group = _clone_groups(state.pp_group, state.pp_size, timeout, ctrl)
        self.pp_ranks = dist.get_process_group_ranks(state.pp_group)  # index = stage
        self._all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor

    def fetch(self, bucket: Bucket, params: dict[str, torch.Tensor], deadline: _Deadline) -> NamedTensors:
        tp, n, device = self.state.tp_size, bucket.local_numel, self.state.device
        if self.state.pp_rank == bucket.stage:
            send = torch.empty(n, dtype=self.dtype, device=device)
            offset = 0
            for slot in bucket.slots:
                send[offset:offset + slot.local_numel].view(slot.local_shape).copy_(params[slot.name])
                offset += slot.local_numel
            if tp > 1:
                recv = torch.empty(tp * n, dtype=self.dtype, device=device)
                deadline.wait(self._all_gather(recv, send, group=self.tp_group, async_op=True))
            else:
                recv = send
        else:
            recv = torch.empty(tp * n, dtype=self.dtype, device=device)
        if self.state.pp_size > 1:
            deadline.wait(dist.broadcast(recv, src=self.pp_ranks[bucket.stage], group=self.pp_group, async_op=True))
        chunks = recv.view(tp, n)
        out: NamedTensors = []
        offset = 0
        for slot in bucket.slots:
            pm, k = slot.param_map, slot.local_numel
            ranks = range(tp) if pm.tp_split_dim is not None else range(1)
            shards = [chunks[r, offset:offset + k].view(slot.local_shape) for r in ranks]
            out.extend(to_hf_tensors(pm, shards, self.model).items())
            offset += k
        return out

    def close(self) -> None:
        pass


class SharedMemoryTransport:
    """The owning TP ranks write HF tensors into a node-shared staging area (two bucket-sized slots, so writing
    bucket i+1 never overlaps reading bucket i; one barrier per bucket). CPU only, all ranks on one node. The
    /dev/shm segment is unlinked as soon as every rank has mapped it, so nothing outlives the job."""

    name = "shm"

    def __init__(self, state: ParallelState, model: ModelConfig, dtype: torch.dtype, buckets: list[Bucket],
                 ctrl) -> None:
        self.state, self.model, self.dtype, self.ctrl = state, model, dtype, ctrl
        itemsize = torch.empty((), dtype=dtype).element_size()
        self.layouts = [self._layout(b, itemsize) for b in buckets]
        largest = max((end for layout in self.layouts for *_, end in layout), default=0)
        self.slot_bytes = -(-largest // _ALIGN) * _ALIGN
        name = [SYNC_SHM_PREFIX + uuid.uuid4().hex] if dist.get_rank() == 0 else [None]
        dist.broadcast_object_list(name, src=0, group=ctrl)
        path = f"/dev/shm/{name[0]}"
        size = max(2 * self.slot_bytes, 1)
        if dist.get_rank() == 0:  # create and map at once: an unmapped segment counts as stale (env.py)
            self._map = self._open_and_map(path, size, os.O_CREAT | os.O_EXCL)
        dist.barrier(group=ctrl)
        if dist.get_rank() != 0:
            self._map = self._open_and_map(path, size, 0)
        dist.barrier(group=ctrl)
        if dist.get_rank() == 0:
            os.unlink(path)
        self.buffer = torch.frombuffer(self._map, dtype=torch.uint8)
        self.writer = state.dp_rank == 0

    @staticmethod
    def _open_and_map(path: str, size: int, flags: int) -> mmap.mmap:
        fd = os.open(path, os.O_RDWR | flags, 0o600)
        try:
            if flags & os.O_CREAT:
                os.ftruncate(fd, size)
            return mmap.mmap(fd, size)
        finally:
            os.close(fd)

    @staticmethod
    def _layout(bucket: Bucket, itemsize: int) -> list[tuple[str, tuple[int, ...], int, int]]:
        """(hf name, shape, start byte, end byte) of each HF tensor of the bucket inside one slot."""
        layout, pos = [], 0
        for slot in bucket.slots:
            for hf_name, shape in zip(slot.param_map.hf_names, slot.hf_shapes):
                end = pos + _numel(shape) * itemsize
                layout.append((hf_name, shape, pos, end))
                pos = -(-end // _ALIGN) * _ALIGN
        return layout

    def fetch(self, bucket: Bucket, params: dict[str, torch.Tensor], deadline: _Deadline) -> NamedTensors:
        base = (bucket.index % 2) * self.slot_bytes
        views = [(hf_name, self.buffer[base + start:base + end].view(self.dtype).view(shape))
                 for hf_name, shape, start, end in self.layouts[bucket.index]]
        if self.writer and self.state.pp_rank == bucket.stage:
            i = 0
            for slot in bucket.slots:
                k = len(slot.hf_shapes)
                scatter_shard(slot.param_map, params[slot.name], [v for _, v in views[i:i + k]], self.model,
                              self.state.tp_rank, self.state.tp_size)
                i += k
        deadline.wait(dist.barrier(group=self.ctrl, async_op=True))
        return views

    def close(self) -> None:
        del self.buffer
        try:
            self._map.close()
        except BufferError:  # a caller still holds a view; the mapping goes with the last reference
            pass


def _clone_groups(group, size: int, timeout: datetime.timedelta, ctrl):
    """This rank's copy (with the sync timeout) of a Megatron group; collective over the job."""
    if size == 1:
        return None
    ranks = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, tuple(dist.get_process_group_ranks(group)), group=ctrl)
    unique = sorted(set(ranks))
    mine, _ = dist.new_subgroups_by_enumeration([list(r) for r in unique], timeout=timeout)
    return mine


# ---------------------------------------------------------------------------------------------- the syncer


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
        per_rank = [None] * dist.get_world_size()
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

    def iter_buckets(self, deadline: _Deadline | None = None) -> Iterator[tuple[Bucket, NamedTensors]]:
        """Yield ``(bucket, [(hf_name, full tensor in the rollout dtype)])`` for every bucket, in order, on every
        rank (collective: every rank must consume the whole generator). A bucket's tensors may be views into
        staging memory: use them before asking for the bucket after next."""
        deadline = deadline or _Deadline(self.cfg.sync_timeout_s)
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
        deadline = _Deadline(self.cfg.sync_timeout_s)
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
