"""Snapshots and deltas: Parquet + JSON manifest, round trips, ordering, integrity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tiktok_pipelines.embedding import (
    AdagradConfig,
    CollisionlessEmbeddingTable,
    HashingTrickEmbeddingTable,
    TableConfig,
    apply_delta,
    load_snapshot,
    read_export,
)


def _state(table) -> dict[int, tuple]:
    rows = table.live_rows()
    s = table.row_state(rows)
    return {int(i): (e.tobytes(), a.tobytes(), int(t), int(c)) for i, e, a, t, c in
            zip(s["id"], s["embedding"], s["adagrad_accumulator"], s["last_update_s"], s["count"])}


def _embeddings(table) -> dict[int, bytes]:
    s = table.row_state(table.live_rows())
    return {int(i): e.tobytes() for i, e in zip(s["id"], s["embedding"])}


def _train(table, rng, ids, now_s) -> None:
    rows = table.lookup_or_insert(ids, now_s)
    distinct = np.unique(rows[rows >= 0])
    table.apply_adagrad(distinct, rng.normal(size=(distinct.size, table.dim)).astype(np.float32), now_s)


def _table() -> CollisionlessEmbeddingTable:
    return CollisionlessEmbeddingTable(TableConfig(dim=4, ttl_seconds=500, init_scale=0.1,
                                                   adagrad=AdagradConfig(lr=0.1, initial_accumulator_value=0.1)))


def test_snapshot_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    table = _table()
    _train(table, rng, np.array([0, -1, 2**63 - 1, -(2**63), 42, 42]), now_s=10)
    _train(table, rng, rng.integers(-(10**12), 10**12, size=500), now_s=20)
    manifest = table.export_snapshot(tmp_path / "snap", now_s=30)
    assert manifest["kind"] == "snapshot" and manifest["num_rows"] == len(table)
    loaded = load_snapshot(tmp_path / "snap")
    assert _state(loaded) == _state(table)
    loaded.check_invariants()
    assert loaded.export_seq == table.export_seq == 1


def test_snapshot_plus_deltas_equals_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    table = _table()
    _train(table, rng, rng.integers(0, 300, size=400), now_s=0)
    table.export_snapshot(tmp_path / "s0", now_s=0)
    paths = []
    for k in range(1, 6):
        now = k * 200
        _train(table, rng, rng.integers(0, 300 + 100 * k, size=300), now_s=now)
        table.delete(rng.integers(0, 300, size=20))
        _train(table, rng, rng.integers(0, 50, size=20), now_s=now)  # some deleted ids come back
        path = tmp_path / f"d{k}"
        # every other delta carries optimizer state; the last one must, to compare everything
        table.export_delta(path, now_s=now, include_optimizer_state=(k % 2 == 1))
        paths.append(path)
    assert table.eviction_log.total_evicted > 0, "the TTL should have evicted idle rows at export"
    reader = load_snapshot(tmp_path / "s0")
    for path in paths:
        apply_delta(reader, path)
    assert _embeddings(reader) == _embeddings(table)
    assert set(_state(reader)) == set(_state(table))
    reader.check_invariants()


def test_delta_with_optimizer_state_restores_everything(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    table = _table()
    _train(table, rng, np.arange(100), now_s=0)
    table.export_snapshot(tmp_path / "s", now_s=0)
    _train(table, rng, np.arange(50, 150), now_s=5)
    table.delete(np.arange(10))
    table.export_delta(tmp_path / "d", now_s=5, include_optimizer_state=True)
    reader = load_snapshot(tmp_path / "s")
    apply_delta(reader, tmp_path / "d")
    assert _state(reader) == _state(table)


def test_delta_contains_only_touched_rows_and_deletions(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    table = _table()
    _train(table, rng, np.arange(100), now_s=0)
    table.export_snapshot(tmp_path / "s", now_s=0)
    _train(table, rng, np.array([5, 6, 200]), now_s=1)
    table.delete(np.array([7, 999]))
    table.export_delta(tmp_path / "d", now_s=1)
    data = read_export(tmp_path / "d")
    assert sorted(data.ids.tolist()) == [5, 6, 200]
    assert data.deleted_ids.tolist() == [7]
    assert data.accumulators is None  # serving delta: no optimizer state
    # Nothing changed since: the next delta is empty.
    table.export_delta(tmp_path / "d2", now_s=1)
    empty = read_export(tmp_path / "d2")
    assert empty.ids.size == 0 and empty.deleted_ids.size == 0
    assert empty.manifest["base_seq"] == data.manifest["seq"]


def test_deltas_must_apply_in_order(tmp_path: Path) -> None:
    table = _table()
    table.lookup_or_insert(np.arange(5), now_s=0)
    table.export_snapshot(tmp_path / "s", now_s=0)
    table.lookup_or_insert(np.arange(5, 10), now_s=1)
    table.export_delta(tmp_path / "d1", now_s=1)
    table.lookup_or_insert(np.arange(10, 15), now_s=2)
    table.export_delta(tmp_path / "d2", now_s=2)
    reader = load_snapshot(tmp_path / "s")
    with pytest.raises(ValueError, match="follows seq"):
        apply_delta(reader, tmp_path / "d2")
    apply_delta(reader, tmp_path / "d1")
    apply_delta(reader, tmp_path / "d2")
    assert len(reader) == 15


def test_files_are_parquet_and_json_with_checksums(tmp_path: Path) -> None:
    table = _table()
    table.lookup_or_insert(np.arange(20), now_s=0)
    table.export_snapshot(tmp_path / "s", now_s=0)
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == ["manifest.json", "rows.parquet"]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["format"].startswith("tiktok_pipelines.embedding/")
    schema = pq.read_schema(tmp_path / "s" / "rows.parquet")
    assert schema.names == ["id", "embedding", "adagrad_accumulator", "last_update_s", "count"]
    assert schema.field("embedding").type.list_size == 4
    # Corrupt the data: the reader refuses it.
    path = tmp_path / "s" / "rows.parquet"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        read_export(tmp_path / "s")


def test_publish_is_atomic_and_immutable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _table()
    table.lookup_or_insert(np.arange(20), now_s=0)
    from tiktok_pipelines import publish

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(publish, "write_manifest", crash)  # the manifest, written last, fails
    with pytest.raises(OSError):
        table.export_snapshot(tmp_path / "s", now_s=0)
    assert list(tmp_path.iterdir()) == [], "a failed export must leave nothing behind"
    assert table.export_seq == 0 and table.touched_rows().size == 20, "failed export must not clear tracking"
    monkeypatch.undo()
    table.export_snapshot(tmp_path / "s", now_s=0)
    with pytest.raises(FileExistsError):
        table.export_snapshot(tmp_path / "s", now_s=1)


def test_delta_needs_a_snapshot_first(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="snapshot"):
        _table().export_delta(tmp_path / "d", now_s=0)


def test_hashing_trick_table_exports_its_buckets(tmp_path: Path) -> None:
    table = HashingTrickEmbeddingTable(TableConfig(dim=2, init_scale=0.1), num_rows=16)
    rows = table.lookup_or_insert(np.arange(100), now_s=0)
    table.apply_adagrad(np.unique(rows), np.ones((np.unique(rows).size, 2), np.float32), now_s=0)
    table.export_snapshot(tmp_path / "s", now_s=0)
    data = read_export(tmp_path / "s")
    assert data.manifest["table_kind"] == "hashing_trick"
    np.testing.assert_array_equal(np.sort(data.ids), np.arange(16))
    np.testing.assert_array_equal(data.embeddings[np.argsort(data.ids)], table.gather(np.arange(16)))
