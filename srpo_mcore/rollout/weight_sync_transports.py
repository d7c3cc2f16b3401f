"""The weight sync's transports: how one bucket's HF tensors, in the rollout dtype, reach every rank
(``shm``: a node-shared staging area on CPU; ``collective``: TP all-gather + PP broadcast), each wait bounded
by the sync's deadline. See weight_sync.py for when each is chosen."""

from __future__ import annotations

import datetime
import mmap
import os
import time
import uuid

import torch
import torch.distributed as dist

from srpo_mcore.config.model import ModelConfig
from srpo_mcore.distributed import ParallelState
from srpo_mcore.model.hf_layout import to_hf_tensors
from srpo_mcore.rollout.env import SYNC_SHM_PREFIX
from srpo_mcore.rollout.layout import scatter_shard
from srpo_mcore.rollout.weight_sync_plan import Bucket, NamedTensors, numel

_ALIGN = 64  # byte alignment of tensors inside the shared staging buffer


class SyncDeadline:
    """The time left of ``rollout.sync_timeout_s`` for one sync; every collective waits at most that long."""

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

    def fetch(self, bucket: Bucket, params: dict[str, torch.Tensor], deadline: SyncDeadline) -> NamedTensors:
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
                end = pos + numel(shape) * itemsize
                layout.append((hf_name, shape, pos, end))
                pos = -(-end // _ALIGN) * _ALIGN
        return layout

    def fetch(self, bucket: Bucket, params: dict[str, torch.Tensor], deadline: SyncDeadline) -> NamedTensors:
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
    ranks: list = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, tuple(dist.get_process_group_ranks(group)), group=ctrl)
    unique = sorted(set(ranks))
    mine, _ = dist.new_subgroups_by_enumeration([list(r) for r in unique], timeout=timeout)
    return mine
