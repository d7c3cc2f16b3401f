"""Backend registry: pick the Triton kernels or the PyTorch implementation of each op by name.

    from srpo_kernels.backends import get_op
    grpo_loss = get_op("grpo_loss", backend="auto")   # "triton" on a CUDA machine, "torch" elsewhere

``"torch"`` is the reference implementation run in token chunks under activation checkpointing (memory-sane,
what the trainer uses on CPU, where Triton's interpreter is far too slow to train). ``"triton"`` needs CUDA,
or ``TRITON_INTERPRET=1`` for tests. An explicitly requested backend that cannot run raises
:class:`BackendUnavailableError` saying why; ``"auto"`` never picks the interpreter.

This module imports neither triton nor the op modules until an op is requested.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable

BACKENDS = ("auto", "triton", "torch")

# Tokens per chunk of the torch backend: bounds its float32 temporaries to ~chunk x V/TP x 4 bytes each.
TORCH_TOKEN_CHUNK = 1024

# op name -> (triton implementation, torch implementation), as "module:function" under srpo_kernels.
_OPS: dict[str, tuple[str, str]] = {
    "logprobs": ("logprobs:logprobs", "logprobs_reference:reference_logprobs"),
    "fused_linear_logprobs": (
        "fused_linear_logprobs:fused_linear_logprobs",
        "fused_linear_logprobs_reference:reference_fused_linear_logprobs",
    ),
    "grpo_loss": ("grpo_loss:grpo_loss", "grpo_loss_reference:reference_grpo_loss"),
}


class BackendUnavailableError(RuntimeError):
    """An explicitly requested kernel backend cannot run in this process."""


def ops() -> tuple[str, ...]:
    return tuple(_OPS)


def triton_unavailable_reason() -> str | None:
    """Why the Triton backend cannot run here, or ``None`` if it can (CUDA, or the interpreter for tests)."""
    try:
        import triton  # noqa: F401
    except ImportError as err:  # pragma: no cover - triton is a requirement
        return f"triton is not importable ({err})"
    import torch

    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
        return None
    return "no CUDA device, and TRITON_INTERPRET=1 is not set (the interpreter is for tests only)"


def resolve_backend(backend: str = "auto") -> str:
    """``"triton"`` or ``"torch"`` for a requested backend; raises if an explicit request cannot be met."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown kernel backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        import torch

        return "triton" if torch.cuda.is_available() and triton_unavailable_reason() is None else "torch"
    if backend == "triton" and (reason := triton_unavailable_reason()) is not None:
        raise BackendUnavailableError(f"backend='triton' was requested but cannot run: {reason}")
    return backend


def get_op(name: str, backend: str = "auto") -> Callable:
    """The implementation of op ``name`` (one of :func:`ops`) for ``backend``; both share one signature
    except that the torch one also accepts ``chunk_size`` (tokens per checkpointed chunk)."""
    if name not in _OPS:
        raise ValueError(f"unknown kernel op {name!r}; choose one of {ops()}")
    chosen = resolve_backend(backend)
    module_name, func_name = _OPS[name][0 if chosen == "triton" else 1].split(":")
    try:
        module = importlib.import_module(f"srpo_kernels.{module_name}")
    except ImportError as err:
        raise BackendUnavailableError(f"backend={chosen!r} for op {name!r} failed to import: {err}") from err
    fn = getattr(module, func_name)
    return functools.partial(fn, chunk_size=TORCH_TOKEN_CHUNK) if chosen == "torch" else fn
