import json
import sys

import numpy as np
import pytest

import srpo_mcore
from benchmarks import packing as bench_packing
from srpo_mcore.train.packing import plan_micro_batches

BACKENDS = ["native", "reference"]


def random_cases(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        budget = int(rng.integers(8, 200))
        lengths = rng.integers(1, budget + 1, size=int(rng.integers(0, 80)))
        yield lengths, int(rng.integers(1, 7)), budget, bool(rng.integers(2)), int(rng.choice([1, 1, 3, 12]))


def test_native_equals_reference_on_random_cases():
    for lengths, ranks, budget, equal_counts, min_mb in random_cases(300):
        kwargs = dict(
            num_ranks=ranks, token_budget=budget, equal_counts=equal_counts, min_micro_batches=min_mb
        )
        native = plan_micro_batches(lengths, **kwargs)
        reference = plan_micro_batches(lengths, backend="reference", **kwargs)
        assert np.array_equal(native.indices, reference.indices), kwargs
        assert np.array_equal(native.offsets, reference.offsets), kwargs
        assert native.num_micro_batches == reference.num_micro_batches


def test_plan_invariants():
    for lengths, ranks, budget, equal_counts, min_mb in random_cases(300, seed=1):
        plan = plan_micro_batches(
            lengths, num_ranks=ranks, token_budget=budget, equal_counts=equal_counts, min_micro_batches=min_mb
        )
        m = plan.num_micro_batches
        assert len(plan.offsets) == ranks * m + 1 and m >= min_mb  # the same count on every rank
        assert sorted(plan.indices.tolist()) == list(range(len(lengths)))  # every sequence exactly once
        for rank in range(ranks):
            for i, ids in enumerate(plan.rank_micro_batches(rank)):
                assert lengths[ids].sum() == plan.micro_batch_tokens[rank, i] <= budget
            assert list(plan.micro_batch_tokens[rank]) == sorted(plan.micro_batch_tokens[rank], reverse=True)
        totals = plan.rank_tokens
        if len(lengths):
            # LPT and the chunked equal-count rule both keep the spread within the longest sequence
            assert totals.max() - totals.min() <= lengths.max()
            # first fit: any two micro-batches hold more than the budget: fewer than 2 x tokens / budget + 1
            assert m <= max(min_mb, int(2 * totals.max() / budget) + 1)
        if equal_counts:
            counts = [sum(len(ids) for ids in plan.rank_micro_batches(r)) for r in range(ranks)]
            assert max(counts) - min(counts) <= 1


def test_hand_computed_plan():
    # longest first: 8 (2), 7 (4), 5 (0), 3 (1), 2 (3). LPT: rank 0 <- 8, rank 1 <- 7, rank 1 <- 5 (12),
    # rank 0 <- 3 (11), rank 0 <- 2 (13). First fit, budget 10: rank 0 [8, 2] [3]; rank 1 [7] [5].
    for backend in BACKENDS:
        plan = plan_micro_batches([5, 3, 8, 2, 7], num_ranks=2, token_budget=10, backend=backend)
        assert plan.num_micro_batches == 2
        assert [ids.tolist() for ids in plan.rank_micro_batches(0)] == [[2, 3], [1]]
        assert [ids.tolist() for ids in plan.rank_micro_batches(1)] == [[4], [0]]
        assert plan.micro_batch_tokens.tolist() == [[10, 3], [7, 5]]
        assert plan.rank_tokens.tolist() == [13, 12] and plan.imbalance == pytest.approx(0.5 / 12.5)


def test_splitting_up_to_min_micro_batches():
    # one micro-batch of eight 10-token sequences, split by LPT halves: [0 2 4 6] [1 3 5 7], then
    # [0 4] [2 6] (ties go to the lower position), then [1 5] [3 7]
    for backend in BACKENDS:
        plan = plan_micro_batches(
            [10] * 8, num_ranks=1, token_budget=100, min_micro_batches=4, backend=backend
        )
        assert [ids.tolist() for ids in plan.rank_micro_batches(0)] == [[0, 4], [1, 5], [2, 6], [3, 7]]


def test_ranks_with_few_sequences_get_empty_micro_batches():
    for backend in BACKENDS:
        plan = plan_micro_batches([4, 4, 4], num_ranks=4, token_budget=4, backend=backend)
        assert plan.num_micro_batches == 1
        assert [len(plan.micro_batch(r, 0)) for r in range(4)] == [1, 1, 1, 0]
        plan = plan_micro_batches([], num_ranks=2, token_budget=4, min_micro_batches=2, backend=backend)
        assert plan.num_micro_batches == 2 and plan.indices.size == 0 and plan.imbalance == 0.0


def test_large_uniform_batch_is_balanced_within_one_percent():
    lengths = np.random.default_rng(0).integers(64, 32769, size=50_000)
    for equal_counts in (False, True):
        plan = plan_micro_batches(lengths, num_ranks=8, token_budget=65536, equal_counts=equal_counts)
        assert plan.imbalance <= 0.01
        assert plan.micro_batch_tokens.max() <= 65536


@pytest.mark.parametrize("backend", BACKENDS)
def test_oversize_and_invalid_input(backend):
    with pytest.raises(
        ValueError, match="sequence 1 has 11 tokens, more than the micro-batch token budget 10"
    ):
        plan_micro_batches([3, 11], num_ranks=1, token_budget=10, backend=backend)
    with pytest.raises(ValueError, match="at least one token"):
        plan_micro_batches([3, 0], num_ranks=1, token_budget=10, backend=backend)
    with pytest.raises(ValueError, match=">= 1"):
        plan_micro_batches([3], num_ranks=0, token_budget=10, backend=backend)
    with pytest.raises(ValueError, match="integers"):
        plan_micro_batches([3.5], num_ranks=1, token_budget=10, backend=backend)
    with pytest.raises(ValueError, match="1-D"):
        plan_micro_batches([[3]], num_ranks=1, token_budget=10, backend=backend)


def test_unknown_backend_and_bad_index():
    with pytest.raises(ValueError, match="backend"):
        plan_micro_batches([3], num_ranks=1, token_budget=10, backend="triton")
    with pytest.raises(IndexError):
        plan_micro_batches([3], num_ranks=1, token_budget=10).micro_batch(1, 0)


def test_missing_extension_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "srpo_mcore._C", None)  # what Python does for a module that cannot load
    monkeypatch.delattr(srpo_mcore, "_C", raising=False)
    with pytest.raises(ImportError, match="not built.*pip install"):
        plan_micro_batches([3], num_ranks=1, token_budget=10)


def test_benchmark_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench_packing.main(
        ["--sequences", "3000", "--reference-sequences", "300", "--repeats", "1", "--json", str(out)]
    )
    report = json.loads(out.read_text())
    assert report["native_equals_reference"] is True
    assert [r["case"] for r in report["rows"]] == ["full", "small", "small"]
    assert "imbal %" in capsys.readouterr().out
