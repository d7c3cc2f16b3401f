"""The one dtype map: config names <-> torch dtypes, and what the config accepts."""

import pytest
import torch

from srpo_mcore.config.model import DTYPE_BYTES, DTYPES
from srpo_mcore.model.dtypes import dtype_name, torch_dtype


def test_every_config_dtype_round_trips_with_its_element_size():
    for name in DTYPES:
        dtype = torch_dtype(name)
        assert dtype_name(dtype) == name
        assert torch.empty((), dtype=dtype).element_size() == DTYPE_BYTES[name]
    assert torch_dtype("bfloat16") is torch.bfloat16


def test_unknown_names_and_dtypes_are_refused():
    with pytest.raises(ValueError, match="bf16"):
        torch_dtype("bf16")
    with pytest.raises(ValueError, match="float64"):
        dtype_name(torch.float64)
