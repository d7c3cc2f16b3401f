"""The one map between the config's dtype names (``config.model.DTYPES``) and torch dtypes."""

from __future__ import annotations

import torch

from srpo_mcore.config.model import DTYPES

TORCH_DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPES}


def torch_dtype(name: str) -> torch.dtype:
    """``"bfloat16"`` -> ``torch.bfloat16``; a name outside ``config.model.DTYPES`` raises ``ValueError``."""
    if name not in TORCH_DTYPES:
        raise ValueError(f"unknown dtype {name!r}; expected one of {DTYPES}")
    return TORCH_DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (the spelling of configs, HF ``torch_dtype`` and vLLM)."""
    for name, value in TORCH_DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"unsupported dtype {dtype}; expected one of {DTYPES}")
