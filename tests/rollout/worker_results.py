"""What a multi-rank rollout worker reports: each rank records values under keys, then rank 0 writes one JSON file
``{key: [rank 0's value, rank 1's, ...]}`` (``None`` where a rank recorded nothing) for the test to read."""

import json
from pathlib import Path

import torch.distributed as dist

RESULTS: dict = {}


def record(key, value):
    RESULTS[key] = value


def write_gathered(path: str | Path) -> None:
    """Gather every rank's records (collective) and write them from rank 0, keyed as rank 0 recorded them."""
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, RESULTS)
    if dist.get_rank() == 0:
        merged = {k: [part.get(k) for part in gathered] for k in gathered[0]}
        Path(path).write_text(json.dumps(merged, indent=1))
