"""Admission filters (count, probabilistic) and TTL expiry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tiktok_pipelines.embedding import (
    CollisionlessEmbeddingTable,
    CountFilter,
    ProbabilisticFilter,
    TableConfig,
    probability_for_expected_count,
)


def test_count_filter_admits_exactly_at_k_when_sketch_is_roomy() -> None:
    table = CollisionlessEmbeddingTable(TableConfig(dim=2, init_scale=1.0), admission=CountFilter(3, num_counters=1 << 16))
    ids = np.array([7, 8, 9])
    for sighting in (1, 2):
        rows = table.lookup_or_insert(ids[: 4 - sighting], now_s=sighting)
        assert np.all(rows == -1), f"admitted after {sighting} sightings"
        assert np.all(table.embeddings_for(ids) == 0)
    rows = table.lookup_or_insert(ids, now_s=3)
    # 7 and 8 now seen 3 times (admitted); 9 only twice.
    assert rows[0] >= 0 and rows[1] >= 0 and rows[2] == -1
    assert len(table) == 2
    # Once admitted, the row's count records the occurrences since admission.
    assert table.storage.counts[rows[0]] == 1


def test_count_filter_admits_for_the_whole_batch() -> None:
    table = CollisionlessEmbeddingTable(TableConfig(dim=2), admission=CountFilter(2))
    rows = table.lookup_or_insert(np.array([5, 6, 5]), now_s=0)
    assert rows[0] == rows[2] >= 0 and rows[1] == -1


def test_count_min_sketch_never_undercounts() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5000, size=20000)
    sketch = CountFilter(10, num_counters=256)  # deliberately tiny: heavy collisions
    sketch.admit(ids)
    distinct, true_counts = np.unique(ids, return_counts=True)
    est = sketch.estimate_counts(distinct).astype(np.int64)
    assert np.all(est >= true_counts)
    assert np.any(est > true_counts), "a sketch this small must over-count somewhere"


def test_q_formula_matches_monolith() -> None:
    for t in (1, 5, 20):
        q = probability_for_expected_count(t)
        assert q == pytest.approx(1 - 0.05 ** (1 / t))
        assert 1 - (1 - q) ** t == pytest.approx(0.95)


def test_probabilistic_filter_admission_rate() -> None:
    """After c sightings an id holds a row with probability 1 - (1 - q)^c."""
    n_ids, sightings = 20000, 3
    filt = ProbabilisticFilter(expected_count=10, seed=1)
    table = CollisionlessEmbeddingTable(TableConfig(dim=1), admission=filt)
    ids = np.arange(n_ids)
    for s in range(sightings):
        table.lookup_or_insert(ids, now_s=s)
    p = 1 - (1 - filt.q) ** sightings
    admitted = np.mean(table.lookup(ids) >= 0)
    sigma = math.sqrt(p * (1 - p) / n_ids)
    assert abs(admitted - p) < 5 * sigma, (admitted, p)


def test_ttl_expiry_evicts_idle_rows_and_records_them() -> None:
    table = CollisionlessEmbeddingTable(TableConfig(dim=2, ttl_seconds=100))
    table.lookup_or_insert(np.arange(10), now_s=0)
    table.lookup_or_insert(np.arange(5), now_s=50)  # 0-4 refreshed
    assert table.expire(now_s=100).size == 0  # idle exactly TTL: kept
    evicted = table.expire(now_s=101)
    np.testing.assert_array_equal(np.sort(evicted), np.arange(5, 10))
    assert np.all(table.lookup(np.arange(5, 10)) == -1)
    assert np.all(table.lookup(np.arange(5)) >= 0)
    assert table.eviction_log.total_evicted == 5
    assert table.eviction_log.runs[-1] == (101, 5)
    np.testing.assert_array_equal(np.sort(table.pending_deleted_ids()), np.arange(5, 10))
    table.check_invariants()


def test_gradient_update_refreshes_ttl() -> None:
    table = CollisionlessEmbeddingTable(TableConfig(dim=2, ttl_seconds=10))
    rows = table.lookup_or_insert(np.array([1, 2]), now_s=0)
    table.apply_adagrad(rows[:1], np.ones((1, 2), np.float32), now_s=20)
    assert table.expire(now_s=25).tolist() == [2]


def test_no_ttl_never_expires() -> None:
    table = CollisionlessEmbeddingTable(TableConfig(dim=2))
    table.lookup_or_insert(np.arange(3), now_s=0)
    assert table.expire(now_s=10**9).size == 0 and len(table) == 3
