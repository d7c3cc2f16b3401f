"""Data curation: from raw dataset files to a curated training set, offline, before any run.

curate.py    ``python -m srpo_mcore.curation.curate``: load, run the steps, write the records and the report
config.py    ``CurationConfig`` (filled in from curate's flags)
pipeline.py  the curation steps (``Curator``); report.py their bookkeeping
filters.py   SRPO rule filters; dedup.py exact and near duplicates (MinHash LSH)
checks.py    answer and test checks, pass@k difficulty grades; hooks.py the real engines behind them
             (reference solutions through the code sandbox, pass@k with a model)

Layer: above data and rewards (the hooks score with them); nothing in a training run imports it.
"""
