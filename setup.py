"""Packaging for srpo-mcore.

Python packages: ``srpo_mcore`` and ``srpo_kernels`` (the ``kernels/`` folder; see kernels/__init__.py for why
the import name differs). The native extension ``srpo_mcore._C`` (sequence packing / DP balancing) is built
from ``csrc/`` when its sources are present.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def native_extensions():
    sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob("*.cpp"))
    if not sources:
        return []
    from pybind11.setup_helpers import Pybind11Extension

    return [
        Pybind11Extension(
            "srpo_mcore._C",
            sources,
            cxx_std=17,
            extra_compile_args=["-O3"],
        )
    ]


setup(
    name="srpo-mcore",
    version="0.1.0",
    description="SRPO (two-staged history-resampling policy optimization) on Megatron-Core with vLLM rollouts",
    python_requires=">=3.11",
    packages=find_packages(include=["srpo_mcore", "srpo_mcore.*"]) + ["srpo_kernels"],
    package_dir={"srpo_kernels": "kernels"},
    ext_modules=native_extensions(),
    entry_points={"console_scripts": ["srpo-convert=srpo_mcore.convert.__main__:main"]},
)
