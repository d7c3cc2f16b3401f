"""Benchmarks of srpo-mcore: tools, not part of the installed product (setup.py packages only ``srpo_mcore``
and ``srpo_kernels``). Run from the repository root, e.g. ``python -m benchmarks.packing`` or
``torchrun --nproc_per_node=2 -m benchmarks.weight_sync``; docs/benchmarks.md lists every command and figure.
"""
