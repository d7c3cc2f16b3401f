"""The backend registry: resolution, the shared signatures, and the errors of unavailable backends."""

from __future__ import annotations

import functools
import inspect

import pytest
import torch
from srpo_kernels.backends import (
    TORCH_TOKEN_CHUNK,
    BackendUnavailableError,
    get_op,
    ops,
    resolve_backend,
)
from srpo_kernels.triton_utils import check_triton_device
from triton.runtime.jit import JITFunction

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
# Arguments only one backend has: the torch chunking; the Triton tile sizes.
BACKEND_SPECIFIC = {"chunk_size", "block_v", "vocab_chunk_size"}


@pytest.mark.parametrize("op", ops())
def test_both_backends_share_one_signature(op):
    triton_fn, torch_fn = get_op(op, "triton"), get_op(op, "torch")
    assert isinstance(torch_fn, functools.partial) and torch_fn.keywords == {"chunk_size": TORCH_TOKEN_CHUNK}

    def params(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()
                if p.name not in BACKEND_SPECIFIC]

    assert params(triton_fn) == params(torch_fn.func)


@no_cuda
def test_auto_is_torch_without_cuda_even_with_the_interpreter():
    assert resolve_backend("auto") == "torch"
    assert get_op("grpo_loss").func.__name__ == "reference_grpo_loss"


@no_cuda
def test_explicit_triton_without_cuda_or_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailableError, match="no CUDA device, and TRITON_INTERPRET=1 is not set"):
        get_op("logprobs", backend="triton")


def _gpu_only_kernel(x_ptr):  # a kernel object built for the GPU compiler, whatever TRITON_INTERPRET says
    pass


def test_gpu_built_kernels_refuse_cpu_tensors_with_a_clear_error():
    with pytest.raises(BackendUnavailableError, match="backend='torch'"):
        check_triton_device(torch.zeros(3), JITFunction(_gpu_only_kernel))


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown kernel op"):
        get_op("cross_entropy")
    with pytest.raises(ValueError, match="unknown kernel backend"):
        get_op("logprobs", backend="cuda")
