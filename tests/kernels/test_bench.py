"""The benchmark CLI: on CPU it checks the kernels against the fp64 references and exits 0."""

import json

import pytest
import torch
from srpo_kernels.bench import detect_gpu, main


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU mode of the benchmark")
def test_cpu_mode_checks_correctness_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--json", str(out)]) == 0
    assert "Timings need a GPU" in capsys.readouterr().out
    report = json.loads(out.read_text())
    kernels = {row["kernel"] for row in report["correctness"]}
    assert kernels == {"logprobs", "fused_linear_logprobs", "grpo_loss"}
    assert all(row["passed"] and row["max_rel_err"] <= 1e-5 for row in report["correctness"])


def test_gpu_detection_and_argument_errors():
    assert detect_gpu("NVIDIA H100 80GB HBM3") == "H100 SXM"
    assert detect_gpu("NVIDIA H100 PCIe") == "H100 PCIe"
    assert detect_gpu("NVIDIA H100 NVL") == "H100 NVL"
    assert detect_gpu("NVIDIA H200") == "H200"
    assert detect_gpu("NVIDIA A100-SXM4-80GB") is None
    with pytest.raises(SystemExit):
        main(["--kernels", "softmax"])


def test_benchmark_candidates_run_forward_and_backward():
    """The closures the GPU benchmark times, run once on CPU at a tiny shape (Megatron/Liger left out:
    they need a process group / a GPU)."""
    from srpo_kernels.bench import _candidates, _fwd_bwd, _make_inputs, parse_args

    args = parse_args(["--n", "12", "--v", "96", "--tp", "2", "--h", "16", "--entropy", "--temperature", "0.9",
                       "--block-v", "16", "--vocab-chunk", "20", "--baselines", "naive,torch"])
    for kernel in args.kernels:
        inputs = _make_inputs(kernel, args, 48, torch.float32, device="cpu")
        candidates = _candidates(kernel, args, inputs)
        assert {"srpo triton", "srpo torch (chunked)", "naive torch"} <= set(candidates)
        results = {name: fn().item() for name, fn in candidates.items()}
        assert max(results.values()) - min(results.values()) <= 1e-4 * max(map(abs, results.values())), results
        for fn in candidates.values():
            assert all(torch.isfinite(g).all() for g in _fwd_bwd(fn, inputs))
