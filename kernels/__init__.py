"""Fused Triton kernels for srpo-mcore, imported as ``srpo_kernels``.

The folder is ``kernels/`` but the import name is ``srpo_kernels`` (mapped in setup.py): a top-level package
named ``kernels`` would be mistaken by transformers for the Hugging Face ``kernels`` hub package
(``transformers.utils.import_utils.is_kernels_available``). Keep this file free of imports so that, when the
repository root is on ``sys.path``, transformers' probe of ``kernels`` stays cheap and finds no version.
"""
