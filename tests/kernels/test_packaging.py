"""The kernels folder must not pose as Hugging Face's `kernels` hub package to transformers."""

import subprocess
import sys

from tests.torchrun import REPO_ROOT


def test_transformers_does_not_mistake_our_kernels_folder_for_the_hub_package():
    # Run from the repository root, where ./kernels is importable as a top-level name.
    code = ("from transformers.utils.import_utils import is_kernels_available; import srpo_kernels; "
            "print(is_kernels_available(), srpo_kernels.__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "srpo_kernels"]
