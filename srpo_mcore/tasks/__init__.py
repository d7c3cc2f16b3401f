"""The reasoning tasks a policy is trained and evaluated on, shared by the trainer and the evaluation (neither
imports the other):

prompts.py    ``PromptTable``: records from the data files, rendered with the domain's template, tokenized once
scoring.py    ``score_rollouts``: decode rollouts and score them with the rule rewards -> ``ScoredSample``;
              ``StreamingScorer``: the same, submitted prompt by prompt while the engine still generates
pass_at_k.py  pass@1 averaged over k samples (the trainer's periodic eval, ``python -m srpo_mcore.eval``,
              the curation's difficulty grading)
inputs.py     the run's input files (init checkpoint, data files), checked before any rank starts work

Layer: above data, rollout and rewards; below train and eval (tests/test_layering.py).
"""
