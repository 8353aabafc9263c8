"""Property tests: the tables behave like a dict id -> row, and no two ids ever share a row."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiktok_pipelines.embedding import CollisionlessEmbeddingTable, TableConfig
from tiktok_pipelines.embedding.cuckoo import CuckooIdMap
from tiktok_pipelines.embedding.storage import RowStorage

EDGE_IDS = [0, -1, 1, 2**63 - 1, -(2**63), 2**62, -(2**62)]
ids_strategy = st.one_of(
    st.sampled_from(EDGE_IDS),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=0, max_value=60),  # small pool: repeats, deletes of present ids
)
batch = st.lists(ids_strategy, min_size=0, max_size=40)
op = st.tuples(st.sampled_from(["insert", "lookup", "delete"]), batch)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=25))
def test_map_agrees_with_dict_model(ops) -> None:
    # Tiny initial capacity and high load: random sequences grow and rehash many times.
    id_map = CuckooIdMap(capacity_ids=2, max_load=0.95)
    storage = RowStorage(dim=1, capacity=1)
    model: dict[int, int] = {}
    for kind, ids in ops:
        arr = np.array(ids, dtype=np.int64)
        if kind == "insert":
            rows, new_pos = id_map.assign(arr, np.ones(arr.size, dtype=bool), storage)
            new_ids = set()
            for i, key in enumerate(ids):
                if key in model:
                    assert rows[i] == model[key], "an existing id changed row"
                else:
                    model[key] = int(rows[i])
                    new_ids.add(key)
                assert rows[i] >= 0
            assert sorted(arr[new_pos].tolist()) == sorted(new_ids), "new positions != new ids"
        elif kind == "lookup":
            rows = id_map.lookup(arr)
            assert rows.tolist() == [model.get(k, -1) for k in ids]
        else:
            rows = id_map.delete(arr)
            storage.free(rows[rows >= 0])
            removed = [k for k, r in zip(ids, rows.tolist()) if r >= 0]
            assert len(removed) == len(set(removed)), "an id deleted twice"
            for k in removed:
                assert model.pop(k) >= 0
            assert all(k not in model for k in ids)
        assert len(id_map) == len(model)
        rows_in_use = list(model.values())
        assert len(set(rows_in_use)) == len(rows_in_use), "two ids share a row"
        id_map.check_invariants()
    keys, rows = id_map.items()
    assert dict(zip(keys.tolist(), rows.tolist())) == model


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=15))
def test_table_rows_hold_their_own_vectors(ops) -> None:
    """Through the table API: every live id reads its own initial vector (a function of the id),
    which would fail if two ids shared a row or a freed row leaked into another id."""
    table = CollisionlessEmbeddingTable(TableConfig(dim=3, init_scale=1.0, initial_capacity=1))
    live: set[int] = set()
    for now_s, (kind, ids) in enumerate(ops):
        arr = np.array(ids, dtype=np.int64)
        if kind == "insert":
            rows = table.lookup_or_insert(arr, now_s=now_s)
            assert np.all(rows >= 0)
            live |= set(ids)
        elif kind == "delete":
            removed = table.delete(arr)
            assert set(removed.tolist()) == live & set(ids)
            live -= set(ids)
        probe = np.array(sorted(live | set(ids)), dtype=np.int64)
        expected = np.where(np.isin(probe, list(live))[:, None], table.initial_embeddings(probe), 0.0)
        np.testing.assert_array_equal(table.embeddings_for(probe), expected)
        assert len(table) == len(live)
        table.check_invariants()


def test_growth_keeps_every_id_at_scale() -> None:
    rng = np.random.default_rng(1)
    ids = rng.integers(-(2**63), 2**63 - 1, size=300_000, dtype=np.int64)
    ids = np.concatenate([ids, EDGE_IDS])
    table = CollisionlessEmbeddingTable(TableConfig(dim=2, initial_capacity=16))
    rows = np.concatenate([table.lookup_or_insert(chunk, now_s=0) for chunk in np.array_split(ids, 7)])
    distinct = np.unique(ids).size
    assert len(table) == distinct and np.unique(rows).size == distinct
    assert table.id_map.rehash_count >= 10
    np.testing.assert_array_equal(table.lookup(ids), rows)
    table.check_invariants()


def test_cuckoo_cycle_forces_rehash_and_loses_nothing() -> None:
    """Filling a map to its load limit in one batch exercises kick chains and rehash-on-failure."""
    id_map = CuckooIdMap(capacity_ids=64, max_load=0.95)
    storage = RowStorage(dim=1, capacity=1)
    ids = np.arange(-5000, 5000, dtype=np.int64) * 7919
    rows, _ = id_map.assign(ids, np.ones(ids.size, dtype=bool), storage)
    assert np.unique(rows).size == ids.size
    np.testing.assert_array_equal(id_map.lookup(ids), rows)
    id_map.check_invariants()


def test_deleted_rows_are_reused_not_leaked() -> None:
    table = CollisionlessEmbeddingTable(TableConfig(dim=2))
    table.lookup_or_insert(np.arange(100), now_s=0)
    high_water = table.storage.next_row
    table.delete(np.arange(50))
    table.lookup_or_insert(np.arange(1000, 1050), now_s=1)
    assert table.storage.next_row == high_water, "freed rows must be reused before new ones"
    assert len(table) == 100
    table.check_invariants()


def _rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_reserved_rows_cost_only_what_is_touched() -> None:
    """Row arrays are views of big address-space reservations; resident memory must still track
    the rows in use (a reservation committed up front would be gigabytes here)."""
    import gc

    gc.collect()
    before = _rss_bytes()
    table = CollisionlessEmbeddingTable(TableConfig(dim=64, init_scale=0.0))
    ids = np.random.default_rng(3).integers(-(2**63), 2**63 - 1, size=400_000, dtype=np.int64)
    for chunk in np.array_split(ids, 4):
        table.lookup_or_insert(chunk, now_s=0)
    grown = _rss_bytes() - before
    raw = len(table) * 2 * 4 * 64
    # allowance: huge-page rounding (2 MiB per array) and the ids/rows arrays of the batches
    assert grown <= 1.5 * raw + 48 * 2**20, grown / raw
    assert table.storage.embeddings.base is not None  # a view of the reservation


@pytest.mark.parametrize("mmap_fails", [False, True])
def test_rows_survive_outgrowing_the_reservation(monkeypatch, mmap_fails: bool) -> None:
    """Tiny reservations force the copy-into-a-larger-one path (and, with mmap refused as under
    strict overcommit, the plain-memory fallback); every id must keep its vector and state."""
    from tiktok_pipelines.embedding import storage as storage_mod

    monkeypatch.setattr(storage_mod, "RESERVE_ROWS", 8)
    if mmap_fails:
        def refuse(*args, **kwargs):
            raise OSError("overcommit refused")

        monkeypatch.setattr(storage_mod.mmap, "mmap", refuse)
    table = CollisionlessEmbeddingTable(TableConfig(dim=3, init_scale=1.0, initial_capacity=1))
    rng = np.random.default_rng(5)
    live: set[int] = set()
    for step in range(30):
        ids = rng.integers(0, 5_000, size=300, dtype=np.int64)
        table.lookup_or_insert(ids, now_s=step)
        live |= set(ids.tolist())
        if step % 5 == 4:
            gone = np.array(sorted(live)[:: 7], dtype=np.int64)
            table.delete(gone)
            live -= set(gone.tolist())
    probe = np.array(sorted(live), dtype=np.int64)
    np.testing.assert_array_equal(table.embeddings_for(probe), table.initial_embeddings(probe))
    assert len(table) == len(live)
    assert table.storage.capacity >= table.storage.next_row > 8
    table.check_invariants()


@pytest.mark.parametrize("placement_fails", [False, True])
def test_growth_rehomes_a_homeless_pair(monkeypatch, placement_fails: bool) -> None:
    """A failed cuckoo walk hands _grow a homeless (id, row). The doubling path (same seed, then
    place the pair) must keep every pair; when placing it fails, the general rehash under a
    fresh seed must take over and keep them too."""
    from tiktok_pipelines.embedding import cuckoo

    id_map = CuckooIdMap(capacity_ids=2_000)
    storage = RowStorage(dim=1, capacity=1)
    ids = np.random.default_rng(11).integers(-(2**63), 2**63 - 1, size=1_500, dtype=np.int64)
    rows, _ = id_map.assign(ids, np.ones(ids.size, dtype=bool), storage)
    buckets_before, seed_before = id_map._buckets.shape[0], id_map._seed
    if placement_fails:
        monkeypatch.setattr(cuckoo, "_place_all", lambda *args: False)
    homeless_id, homeless_row = np.int64(-(2**63)), np.int64(10**9)
    id_map._size += 1  # as in assign: the pair was counted when its walk began
    id_map._grow(np.array([homeless_id]), np.array([homeless_row]))
    assert id_map._buckets.shape[0] >= 2 * buckets_before
    assert (id_map._seed != seed_before) == placement_fails
    np.testing.assert_array_equal(id_map.lookup(ids), rows)
    assert id_map.lookup(np.array([homeless_id]))[0] == homeless_row
    id_map.check_invariants()
