"""Evaluation: pass@1 over k samples through the rollout engine and the rule rewards.

The shared core is ``srpo_mcore/tasks/pass_at_k.py`` (the trainer's periodic eval, ``python -m srpo_mcore.eval``
and the curation's pass@k grading all call it); ``cli.py`` parses and checks, ``runner.py`` is the torchrun job,
``checkpoint.py`` resolves and loads the weights, ``benchmarks.py`` names the benchmark files, ``report.py`` writes the results.
"""
