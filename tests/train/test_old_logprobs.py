"""Where ``srpo_step`` takes the PPO old log-probs from (``train.old_logprobs``), with a stand-in policy that records
what it was asked to do (one process, gloo): a step of one update on ``auto`` runs no separate pass
(``train/old_logprob_pass`` 0, no ``time/logprobs_s``) and the guard judges the training forward's log-probs after
the update, before the weight sync; ``recompute`` and two mini-batches run the separate pass (metric 1) and the guard
judges before any update. The numerics of the two paths are compared in tests/train/test_loss_path.py (one
micro-batch) and tests/distributed/test_old_logprobs.py (the real Policy at TP1 and TP2)."""

from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist

from srpo_mcore.algorithm.reflection import ReflectionCounter
from srpo_mcore.config import load_config
from srpo_mcore.rollout.guard import MismatchGuard, StaleWeightsError
from srpo_mcore.tasks.scoring import ScoredSample
from srpo_mcore.train.policy import Policy
from srpo_mcore.train.trainer import StepContext, srpo_step

DRIFT = 1e-3  # the stand-in trainer's log-probs: the rollout's plus this


class RecordingPolicy:
    """What srpo_step calls on the policy, recorded in order; the trainer's log-probs are the rollout's + DRIFT."""

    guard_logprobs = Policy.guard_logprobs  # the real reader of extras["old_logprobs"]

    def __init__(self, *, reference: bool, calls: list):
        self.state = SimpleNamespace(is_last_stage=True, device=torch.device("cpu"))
        self.reference = object() if reference else None
        self.calls = calls

    def _store_old(self, micro_batches):
        for mb in micro_batches:
            mask = mb.extras["loss_mask"].bool()
            mb.extras["old_logprobs"] = torch.where(mask, mb.extras["rollout_logprobs"] + DRIFT, 0.0)

    def compute_old_logprobs(self, micro_batches):
        self.calls.append("old_logprobs")
        self._store_old(micro_batches)
        return self.guard_logprobs(micro_batches)

    def compute_reference_logprobs(self, micro_batches):
        self.calls.append("reference")

    def train_step(self, micro_batches, *, global_tokens, global_sequences, old_from_forward=False):
        self.calls.append(f"train(old_from_forward={old_from_forward})")
        if old_from_forward:
            self._store_old(micro_batches)
        return {"loss/policy": 0.0}


class Replay:
    def __init__(self, samples):
        self.samples = samples

    def load_step(self, step, samplers):
        return self.samples, {}


def _samples(groups=4, per_group=2):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(groups * per_group):
        n = 3 + i % 4
        out.append(ScoredSample(group=i // per_group, prompt_id=str(i // per_group), domain="math",
                                prompt_ids=[1, 2, 3], response_ids=list(range(4, 4 + n)),
                                rollout_logprobs=(-torch.rand(n, generator=g)).tolist(), finish_reason="stop",
                                reward=float(i % 2), accuracy=float(i % 2), response_text="x"))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path_factory.mktemp('pg') / 'store'}", rank=0,
                            world_size=1)
    yield
    dist.destroy_process_group()


def run_step(overrides, *, reference=False, guard=None, calls=None, groups=4):
    """One srpo_step on replayed samples; returns its metrics and the policy / weight-sync calls in order."""
    cfg = load_config("configs/models/tiny.yaml", ["train.prompts_per_step=4", "train.samples_per_prompt=2",
                                                   *overrides])
    calls = [] if calls is None else calls
    weight_sync = SimpleNamespace(sync=lambda engine: calls.append("sync") or SimpleNamespace(gb_per_s=1.0))
    ctx = StepContext(
        cfg=cfg, state=SimpleNamespace(dp_rank=0, dp_size=1, pp_size=1, device=torch.device("cpu")),
        prompts=None, samplers={}, stages=None, engine=SimpleNamespace(), weight_sync=weight_sync,
        rewards=None,
        guard=guard or MismatchGuard(10.0, 1e-3), policy=RecordingPolicy(reference=reference, calls=calls),
        tokenizer=SimpleNamespace(pad_token_id=0), reflection=ReflectionCounter(cfg.reflection),
        replay=Replay(_samples(groups)))
    return srpo_step(ctx, 1), calls


def test_one_update_on_auto_skips_the_separate_pass(world):
    metrics, calls = run_step([])
    assert calls == ["train(old_from_forward=True)", "sync"]
    assert metrics["train/old_logprob_pass"] == 0.0 and "time/logprobs_s" not in metrics
    # the guard judged the training forward's log-probs of every response token
    assert metrics["mismatch/mean_abs"] == pytest.approx(DRIFT, rel=1e-4)
    assert metrics["mismatch/max_abs"] == pytest.approx(DRIFT, rel=1e-3)
    assert metrics["mismatch/alarm"] == 0.0 and metrics["mismatch/frac_ratio_outside"] == 0.0


def test_recompute_runs_the_separate_pass_and_judges_before_the_update(world):
    metrics, calls = run_step(["train.old_logprobs=recompute"])
    assert calls == ["old_logprobs", "train(old_from_forward=False)", "sync"]
    assert metrics["train/old_logprob_pass"] == 1.0 and metrics["time/logprobs_s"] > 0.0
    assert metrics["mismatch/mean_abs"] == pytest.approx(DRIFT, rel=1e-4)


def test_two_mini_batches_keep_the_separate_pass(world):
    metrics, calls = run_step(["train.mini_batches_per_step=2"])
    assert calls == ["old_logprobs", "old_logprobs", "train(old_from_forward=False)", "train(old_from_forward=False)",
                     "sync"]
    assert metrics["train/old_logprob_pass"] == 1.0 and "time/logprobs_s" in metrics


def test_a_short_batch_cut_to_one_mini_batch_takes_the_fast_path(world):
    metrics, calls = run_step(["train.mini_batches_per_step=2"], groups=1)  # one group kept: one update
    assert calls == ["train(old_from_forward=True)", "sync"] and metrics["train/old_logprob_pass"] == 0.0


def test_the_kl_reference_keeps_its_own_pass_on_the_fast_path(world):
    metrics, calls = run_step([], reference=True)
    assert calls == ["reference", "train(old_from_forward=True)", "sync"]
    assert metrics["train/old_logprob_pass"] == 0.0 and "time/reference_s" in metrics


@pytest.mark.parametrize("mode,expected_calls", [("auto", ["train(old_from_forward=True)"]),
                                                 ("recompute", ["old_logprobs"])])
def test_a_stale_weight_alarm_stops_the_step_before_the_weight_sync(world, mode, expected_calls):
    """raise on alarm: on the fast path the update has run (its verdict comes after it) but the step raises before
    the weight sync and before returning its metrics, so run_training neither logs nor checkpoints it; with the
    separate pass it raises before the update."""
    guard = MismatchGuard(2.0, 1e-6, raise_on_alarm=True)
    guard.baseline = DRIFT / 100  # the healthy level; the step's drift is 100 times that
    calls = []
    with pytest.raises(StaleWeightsError, match="stale-weight alarm"):
        run_step([f"train.old_logprobs={mode}"], guard=guard, calls=calls)
    assert calls == expected_calls and guard.alarms == 1
