"""Where a step's time goes: ``debug.profile_steps`` runs those steps under :mod:`cProfile` on every rank.

Each profiled step writes ``run_dir/profile/step{N}-rank{R}.pstats`` (load it with :mod:`pstats` or snakeviz) and a
text table ``step{N}-rank{R}.txt``: the functions by cumulative time, so the phases (``collect_groups``,
``Policy.compute_old_logprobs`` when a step runs it, ``Policy.train_step``, ``WeightSync.sync``) and what they
spend their time in (vLLM's ``generate``, Megatron's forward/backward, collectives, attention, the optimizer) read
off one page.
``benchmarks/step_profile.py`` sums these tables over steps and ranks.

cProfile sees Python frames and the C functions they call (a gloo ``wait``, ``scaled_dot_product_attention``); it
adds a few percent of overhead to Python-heavy code, so profiled steps run a little slower than the rest.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def profiled(enabled: bool, out_dir: Path, step: int, rank: int, *, top: int = 60) -> Iterator[None]:
    """Profile the block when ``enabled``; write ``step{step}-rank{rank}.pstats`` and ``.txt`` under ``out_dir``."""
    if not enabled:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = out_dir / f"step{step}-rank{rank}"
        profiler.dump_stats(str(stem.with_suffix(".pstats")))
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
        stem.with_suffix(".txt").write_text(text.getvalue())
