"""The default process group's backend (``distributed.process_group_backend``): with CUDA one group carries CUDA
tensors over NCCL and CPU tensors over gloo, because the loop all-reduces CPU scalars every step."""

import pytest
import torch
import torch.distributed as dist

from srpo_mcore import distributed, platform


@pytest.mark.parametrize("requested", ["auto", "nccl"])
def test_cuda_machine_gets_nccl_for_cuda_and_gloo_for_cpu_tensors(monkeypatch, requested):
    monkeypatch.setattr(platform, "has_cuda", lambda: True)
    assert distributed.process_group_backend(requested) == "cpu:gloo,cuda:nccl"


def test_cpu_machine_gets_gloo(monkeypatch):
    monkeypatch.setattr(platform, "has_cuda", lambda: False)
    assert distributed.process_group_backend("auto") == "gloo"
    assert distributed.process_group_backend("gloo") == "gloo"


def test_explicit_gloo_on_a_cuda_machine_stays_gloo(monkeypatch):
    monkeypatch.setattr(platform, "has_cuda", lambda: True)
    assert distributed.process_group_backend("gloo") == "gloo"


def test_nccl_without_cuda_and_unknown_backends_are_refused(monkeypatch):
    monkeypatch.setattr(platform, "has_cuda", lambda: False)
    with pytest.raises(RuntimeError, match="parallel.backend=nccl needs CUDA"):
        distributed.process_group_backend("nccl")
    with pytest.raises(ValueError, match="parallel.backend"):
        distributed.process_group_backend("mpi")


def test_init_process_group_on_cuda_starts_the_mixed_group_on_the_local_gpu(monkeypatch):
    """What torchrun on a GPU node would do: the string handed to torch and the device pinned to LOCAL_RANK."""
    calls = {}
    monkeypatch.setattr(platform, "has_cuda", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, timeout: calls.setdefault("backend", backend))
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.setdefault("device", i))
    for var, value in {"RANK": "3", "WORLD_SIZE": "8", "MASTER_ADDR": "x", "MASTER_PORT": "1", "LOCAL_RANK": "3"}.items():
        monkeypatch.setenv(var, value)
    distributed.init_process_group("auto")
    assert calls == {"backend": "cpu:gloo,cuda:nccl", "device": 3}


def test_the_cpu_part_of_the_string_carries_cpu_tensors(tmp_path):
    """The device-keyed string is accepted by torch and routes CPU tensors to gloo (one rank, CPU part only: a
    CUDA part cannot start without a GPU)."""
    assert not dist.is_initialized()
    dist.init_process_group("cpu:gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        t = torch.tensor([2.0])
        dist.all_reduce(t)
        assert t.item() == 2.0
    finally:
        dist.destroy_process_group()
