"""The one place that owns process groups.

``init_process_group`` starts torch.distributed from torchrun's environment (one default group that carries CUDA
tensors over NCCL and CPU tensors over gloo on GPU machines, gloo alone on CPU; see :func:`process_group_backend`),
``init_model_parallel`` Megatron-Core's model-parallel groups; everything else receives the resulting
:class:`ParallelState` (or reads the groups from it) instead of reaching for globals.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from srpo_mcore import platform
from srpo_mcore.config.base import ConfigError


@dataclass(frozen=True)
class ParallelState:
    rank: int
    world_size: int
    local_rank: int
    tp_size: int
    pp_size: int
    dp_size: int
    tp_rank: int
    pp_rank: int
    dp_rank: int
    tp_group: dist.ProcessGroup
    pp_group: dist.ProcessGroup
    dp_group: dist.ProcessGroup
    device: torch.device

    @property
    def is_first_stage(self) -> bool:
        return self.pp_rank == 0

    @property
    def is_last_stage(self) -> bool:
        return self.pp_rank == self.pp_size - 1


def relaunch_under_torchrun(module: str, argv: list[str], nproc: int) -> int:
    """Run ``python -m module argv`` (or the script ``module`` when it ends in ``.py``) again under ``torchrun`` with
    ``nproc`` local ranks (for entry points that start their own ranks when invoked plainly); returns torchrun's
    exit code."""
    import subprocess

    port = free_local_port()
    # "--" ends torchrun's own options: without it argparse reads the program's flags too, and one that abbreviates
    # a torchrun option (eval's --nproc vs --nproc-per-node) fails as ambiguous or is silently taken by torchrun.
    return subprocess.call(torchrun_argv(module, argv, nproc, port))


def free_local_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a one-node rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_argv(module: str, argv: list[str], nproc: int, port: int) -> list[str]:
    """The command line of :func:`relaunch_under_torchrun`; ``module`` receives exactly ``argv``."""
    import sys

    program = [module] if module.endswith(".py") else ["-m", module]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
            "--master_addr=127.0.0.1", f"--master_port={port}", *program, "--", *argv]


CPU_AND_CUDA_BACKEND = "cpu:gloo,cuda:nccl"


def process_group_backend(requested: str = "auto") -> str:
    """The default process group's backend: the one place that chooses it.

    With CUDA, ``auto`` and ``nccl`` give ``"cpu:gloo,cuda:nccl"``: NCCL carries CUDA tensors (gradients, TP/PP
    traffic) and gloo the CPU ones in the same group (and in every Megatron group created from it without an explicit
    backend). The loop all-reduces CPU scalars each step (loss sums, the stale-weight guard's statistics, the
    preemption flag, packed rollout headers), which a plain NCCL group refuses. Without CUDA: ``gloo``."""
    if requested not in ("auto", "nccl", "gloo"):
        raise ValueError(f"unknown parallel.backend {requested!r}; choose auto, nccl or gloo")
    if requested == "gloo" or (requested == "auto" and not platform.has_cuda()):
        return "gloo"
    if not platform.has_cuda():
        raise RuntimeError("parallel.backend=nccl needs CUDA, and this machine has none (use auto or gloo)")
    return CPU_AND_CUDA_BACKEND


def init_process_group(backend: str = "auto", timeout_s: float = 600.0) -> None:
    """Start the default process group from torchrun's environment (idempotent)."""
    if dist.is_initialized():
        return
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"{var} is not set: start this program with torchrun (e.g. torchrun "
                               f"--nproc_per_node=2 pretrain_srpo.py ...)")
    backend = process_group_backend(backend)
    if "nccl" in backend:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))


def init_model_parallel(tp: int, pp: int, seed: int, backend: str = "auto") -> ParallelState:
    """Create Megatron's TP/PP/DP groups for this layout and seed the model-parallel RNG."""
    from megatron.core import parallel_state as mpu
    from megatron.core import tensor_parallel

    init_process_group(backend)
    world = dist.get_world_size()
    if world % (tp * pp) != 0:
        raise ConfigError("parallel", f"world size {world} is not divisible by TP x PP = {tp * pp}")
    destroy_model_parallel()  # a second layout in one process (tests, tools): free the first one's groups
    mpu.initialize_model_parallel(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    platform.adapt_megatron_for_cpu()
    tensor_parallel.model_parallel_cuda_manual_seed(seed)
    return ParallelState(
        rank=dist.get_rank(), world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        tp_size=tp, pp_size=pp, dp_size=world // (tp * pp),
        tp_rank=mpu.get_tensor_model_parallel_rank(), pp_rank=mpu.get_pipeline_model_parallel_rank(),
        dp_rank=mpu.get_data_parallel_rank(),
        tp_group=mpu.get_tensor_model_parallel_group(), pp_group=mpu.get_pipeline_model_parallel_group(),
        dp_group=mpu.get_data_parallel_group(), device=platform.default_device(),
    )


def destroy_model_parallel() -> None:
    """Megatron's ``destroy_model_parallel()``, which only forgets its groups, plus destroying the process groups
    it created (its ``_global_process_group_list``, this rank's members): each gloo group holds its own threads
    and sockets, and a process that re-initialised Megatron per layout (the parity worker: ~700 groups per rank)
    kept every earlier layout's alive. Nothing may use those groups afterwards."""
    from megatron.core import parallel_state as mpu

    if not mpu.model_parallel_is_initialized():
        return
    created = list({id(g): g for g in (getattr(mpu, "_global_process_group_list", None) or [])
                    if g is not None and g is not dist.GroupMember.WORLD}.values())  # each once
    mpu.destroy_model_parallel()
    if dist.is_initialized():
        for group in created:
            try:
                dist.destroy_process_group(group)
            except ValueError:  # "Invalid process group": Megatron's destroy already took down some gloo groups
                pass
