"""Smoke test of the per-op kernel benchmarks (benchmarks/kernels/): the closures they time run forward and
backward on CPU and agree; without CUDA the command says where the correctness checks are and exits 1."""

import pytest
import torch

from benchmarks.kernels import fused_linear_logprobs, grpo_loss, logprobs
from benchmarks.kernels.common import detect_gpu, fwd_bwd, parse_args

OPS = {"logprobs": logprobs, "fused_linear_logprobs": fused_linear_logprobs, "grpo_loss": grpo_loss}


def test_gpu_detection():
    assert detect_gpu("NVIDIA H100 80GB HBM3") == "H100 SXM"
    assert detect_gpu("NVIDIA H100 PCIe") == "H100 PCIe"
    assert detect_gpu("NVIDIA H100 NVL") == "H100 NVL"
    assert detect_gpu("NVIDIA H200") == "H200"
    assert detect_gpu("NVIDIA A100-SXM4-80GB") is None


@pytest.mark.parametrize("op", sorted(OPS))
def test_unknown_baseline_is_refused(op):
    with pytest.raises(SystemExit):
        OPS[op].main(["--baselines", "naive,softmax"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU message")
def test_without_cuda_points_to_the_tests(capsys):
    assert logprobs.main(["--n", "8"]) == 1
    assert "pytest tests/kernels" in capsys.readouterr().err


@pytest.mark.parametrize("op", sorted(OPS))
def test_benchmark_candidates_run_forward_and_backward(op):
    """The closures the GPU benchmark times, run once on CPU at a tiny shape (Megatron/Liger left out:
    they need a process group / a GPU)."""
    module = OPS[op]
    argv = ["--n", "12", "--v", "96", "--tp", "2", "--entropy", "--temperature", "0.9", "--block-v", "16",
            "--baselines", "naive,torch"]
    if op == "fused_linear_logprobs":
        argv += ["--h", "16", "--vocab-chunk", "20"]
    args = parse_args(module, argv)
    inputs = module.make_inputs(args, torch.float32, device="cpu")
    candidates = module.candidates(args, inputs)
    assert set(candidates) == {"srpo triton", "srpo torch (chunked)", "naive torch"}
    results = {name: fn().item() for name, fn in candidates.items()}
    assert max(results.values()) - min(results.values()) <= 1e-4 * max(map(abs, results.values())), results
    for fn in candidates.values():
        assert all(torch.isfinite(g).all() for g in fwd_bwd(fn, inputs))
