"""debug.profile_steps: the profiled block's functions land in the step's pstats/txt, and benchmarks/step_profile.py
reads them back per step; an unprofiled step writes nothing."""

import time

from benchmarks.step_profile import INSIDE, inside_phases
from srpo_mcore.train.profile import profiled


def _busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_profiled_step_writes_its_functions_and_the_summary_reads_them(tmp_path, monkeypatch):
    with profiled(True, tmp_path, step=3, rank=1):
        _busy_wait(0.05)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step3-rank1.pstats", "step3-rank1.txt"]
    assert "_busy_wait" in (tmp_path / "step3-rank1.txt").read_text()
    monkeypatch.setattr("benchmarks.step_profile.INSIDE", [("busy", "tests/train/test_profile.py", "_busy_wait")])
    inside, own = inside_phases(tmp_path, [3])
    assert 0.04 < inside["busy"] < 0.5
    assert any("_busy_wait" in name for name, _ in own)
    assert inside_phases(tmp_path, [4]) == ({}, [])  # a step that was not profiled


def test_unprofiled_step_writes_nothing(tmp_path):
    with profiled(False, tmp_path / "profile", step=1, rank=0):
        _busy_wait(0.001)
    assert not (tmp_path / "profile").exists()


def test_inside_table_names_real_functions():
    import importlib

    for label, suffix, func in INSIDE:
        if suffix.startswith("srpo_mcore/"):
            module = importlib.import_module(suffix[:-3].replace("/", "."))
            assert any(func in vars(obj) for obj in [module, *vars(module).values()] if hasattr(obj, "__dict__")), label
