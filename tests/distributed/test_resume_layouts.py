"""Resume at another layout (one 4-rank gloo launch): a trainer checkpoint written at TP2 (DP2) loads at TP1 (DP4)
and at TP2xPP2 (DP1) with the weights and Adam moments (gathered to full tensors) bit-equal to the saved ones,
Adam's step, the LR schedule and the History Resampling sampler restored, and one update from the same samples
equal to the original layout's within fp32 tolerance; the same with bf16 params (the optimizer's fp32 main params
resharded bit-equal too); the distributed optimizer, which does not reshard, is refused with both layouts named.

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


def test_bf16_params_and_fp32_main_params_reshard_exactly(found):
    assert found["bf16_main_params_vs_loaded_max_abs"] == 0.0  # main params taken after the HF weights were loaded
    result = found["bf16_tp1pp1"]
    assert result["weight_dtypes"] == ["torch.bfloat16"]
    assert result["optim_keys"] == ["exp_avg", "exp_avg_sq", "fp32_param"]
    for part in ("weights", "optim"):
        assert result[part]["keys_equal"] and result[part]["bit_equal"], (part, result[part])
    assert result["adam_steps"] == [2.0]
    # One update after the resume, from bf16 forward/backward passes at TP1 vs TP2: rounding differs, so the fp32
    # main params are compared on average, against the size of the update.
    update = result["update_fp32_main_params"]
    assert update["tensors"] == result["weights"]["tensors"], update
    assert update["mean_abs_diff"] < 0.05 * update["mean_abs_update"], update  # seen: 4.3e-6 vs 5.0e-4
