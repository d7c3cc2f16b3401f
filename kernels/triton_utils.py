"""Small helpers shared by the Triton kernel modules (device checks, layout)."""

from __future__ import annotations

import torch
from srpo_kernels.backends import BackendUnavailableError
from triton.runtime.interpreter import InterpretedFunction


def interpreted(kernel) -> bool:
    """Whether ``kernel`` was built for Triton's CPU interpreter (``TRITON_INTERPRET=1`` at import time)."""
    return isinstance(kernel, InterpretedFunction)


def check_triton_device(t: torch.Tensor, kernel) -> None:
    """Raise :class:`BackendUnavailableError` when ``kernel`` cannot run on ``t``'s device."""
    if t.is_cuda or interpreted(kernel):
        return
    raise BackendUnavailableError(
        f"the triton backend needs CUDA tensors, got a tensor on {t.device}. On CPU use backend='torch', or "
        "set TRITON_INTERPRET=1 before the srpo_kernels Triton modules are first imported "
        "(srpo_mcore.platform.configure_process_environment() does) to run them in Triton's slow interpreter."
    )


def row_major(x: torch.Tensor) -> torch.Tensor:
    """``x`` with unit stride along its last dimension (a copy only when it is not)."""
    return x if x.stride(-1) == 1 else x.contiguous()
