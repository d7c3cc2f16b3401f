"""Resume at another layout (one 4-rank gloo launch): a trainer checkpoint written at TP2 (DP2) loads at TP1 (DP4)
and at TP2xPP2 (DP1) with the weights and Adam moments (gathered to full tensors) bit-equal to the saved ones,
Adam's step, the LR schedule and the History Resampling sampler restored, and one update from the same samples
equal to the original layout's within fp32 tolerance; the distributed optimizer, which does not reshard, is
refused with both layouts named.

The rank code is tests/distributed/workers/resume_layouts.py; here we assert on what it found.
"""

import json

import pytest

from tests.torchrun import REPO_ROOT, run_torchrun

pytestmark = pytest.mark.distributed
WORKER = REPO_ROOT / "tests/distributed/workers/resume_layouts.py"
LAYOUTS = ["tp1pp1", "tp2pp2"]
UPDATE_TOL = 2e-5  # weights up to ~2, moved ~1e-3 by the update: fp32 reduction order (DP2 vs DP4) seen at 5e-6 (TP1), 1.2e-6 (TP2xPP2)


@pytest.fixture(scope="module")
def found(tiny_hf_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("resume_layouts")
    out = work / "found.json"
    run_torchrun(WORKER, 4, "--hf", str(tiny_hf_dir), "--work", str(work), "--out", str(out), timeout=900,
                 env={"PYTHONPATH": str(REPO_ROOT)})
    return json.loads(out.read_text())


def test_the_saved_state_is_worth_checking(found):
    saved = found["saved"]
    assert saved["adam_steps"] == [2.0]  # two updates before the save
    assert saved["optim_keys"] == ["exp_avg", "exp_avg_sq"] and saved["optim"] == 2 * saved["weights"]
    assert saved["moments_max_abs"] > 0.0
    assert found["update_moved_weights_max_abs"] > 20 * UPDATE_TOL


@pytest.mark.parametrize("layout", LAYOUTS)
def test_weights_and_adam_moments_reshard_exactly(found, layout):
    result = found[layout]
    assert result["fresh_init_max_abs_diff"] > 1e-3  # the new layout did not start from the saved weights
    for part in ("weights", "optim"):
        assert result[part]["keys_equal"] and result[part]["bit_equal"], (part, result[part])
    assert result["adam_steps"] == found["saved"]["adam_steps"]
    assert result["lr_next"] == found["saved"]["lr_next"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sampler_state_is_identical(found, layout):
    assert found[layout]["sampler_state_equal"] and found[layout]["sampler_next_draw_equal"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_one_update_matches_the_original_layout(found, layout):
    result = found[layout]["update"]
    assert result["keys_equal"] and result["max_abs_diff"] <= UPDATE_TOL, result


def test_distributed_optimizer_is_refused_naming_both_layouts(found):
    message = found["distributed_optimizer_refusal"]
    assert "written at TP2 PP1 DP2 with the non-distributed optimizer" in message, message
    assert "this job runs TP1 PP1 DP4 with the distributed optimizer" in message, message
