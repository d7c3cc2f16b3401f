"""GPU benchmarks of the fused Triton kernels, one file per op with the op's name (as ``kernels/<op>.py``,
``kernels/<op>_reference.py`` and ``tests/kernels/test_<op>.py``): ``python -m benchmarks.kernels.<op>``.
The baselines reuse the references the tests check the kernels against; correctness on CPU is the tests' job
(``pytest tests/kernels``), so without CUDA these commands say so and exit 1.
"""
