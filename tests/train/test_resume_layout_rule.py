"""Which layout changes a trainer checkpoint may be resumed across (``train.checkpoint.check_resume_layout``); the
multi-rank resharding itself is tests/distributed/test_resume_layouts.py."""

from pathlib import Path

import pytest

from srpo_mcore.train.checkpoint import check_resume_layout


def layout(tp, pp, dp, distributed=False):
    return {"tp": tp, "pp": pp, "dp": dp, "distributed_optimizer": distributed}


CKPT = Path("run/checkpoints/step_000010")


@pytest.mark.parametrize("saved, mine", [
    (layout(2, 1, 2), layout(1, 1, 4)),  # non-distributed optimizer: any layout of the same world size
    (layout(2, 1, 2), layout(2, 2, 1)),
    (layout(2, 1, 2, True), layout(2, 1, 2, True)),  # distributed optimizer at its own layout
    (None, layout(1, 1, 4, True)),  # written before layouts were recorded: not checked
])
def test_allowed(saved, mine):
    check_resume_layout(CKPT, saved, mine)


@pytest.mark.parametrize("saved, mine, named", [
    (layout(2, 1, 2, True), layout(1, 1, 4, True), ("TP2 PP1 DP2 with the distributed", "TP1 PP1 DP4 with the distributed")),
    (layout(2, 1, 2, True), layout(2, 1, 2), ("TP2 PP1 DP2 with the distributed", "TP2 PP1 DP2 with the non-distributed")),
    (layout(2, 1, 2), layout(2, 1, 2, True), ("TP2 PP1 DP2 with the non-distributed", "TP2 PP1 DP2 with the distributed")),
])
def test_distributed_optimizer_refused_elsewhere(saved, mine, named):
    with pytest.raises(RuntimeError) as err:
        check_resume_layout(CKPT, saved, mine)
    message = str(err.value)
    assert str(CKPT) in message and "parallel.use_distributed_optimizer" in message
    assert f"written at {named[0]}" in message and f"this job runs {named[1]}" in message
