"""Hostile and broken serving directories (issue 15, findings 1, 3 and 4): what a restarted and a
running server do, what /healthz says, and what the next publication does.

Each case was reproduced on the code before the fix: a bogus newest version (an empty directory
with a one-line manifest) made a fresh server answer 503 forever and a running one re-hash every
file each second; a symlinked version from outside the serving root was hot-loaded; a republished
seq was never loaded; a version with every row deleted was swapped in and served nothing while
/healthz said ok; an expiry at a clock in 2099 deleted every row.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tests.serving.test_server import VIDEOS, build_tables, served_over_http, unit, write_catalog
from tiktok_pipelines.embedding import CollisionlessEmbeddingTable, TableConfig
from tiktok_pipelines.serving import store
from tiktok_pipelines.serving.server import ModelServer
from tiktok_pipelines.serving.store import (
    MassExpiry,
    ServingPublisher,
    list_versions,
    load_latest,
    version_dir,
)

BOGUS = {"format": store.FORMAT, "seq": 3}


def two_versions(root: Path) -> tuple[ServingPublisher, dict]:
    """v1 full, v2 a delta moving user 1 towards video 14."""
    tables = build_tables()
    p = ServingPublisher(root)
    p.publish(tables, now_s=1, dense={"w": np.zeros(1)}, full=True)
    tables["video_id"].upsert_rows(np.array([14]), unit(0, 3.0)[None, :], now_s=2)
    p.publish(tables, now_s=2)
    return p, tables


def bogus_newest(root: Path, seq: int = 3) -> Path:
    d = version_dir(root, seq)
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({**BOGUS, "seq": seq}) + "\n")
    return d


@pytest.fixture
def counted_hashing(monkeypatch):
    """How many files the serving store hashes (its sha256_file, counted, still real)."""
    calls = []
    real = store.sha256_file

    def counting(path):
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(store, "sha256_file", counting)
    return calls


def test_a_fresh_server_falls_back_past_a_bogus_newest_version(tmp_path: Path, caplog) -> None:
    root = tmp_path / "serving"
    write_catalog(tmp_path / "catalog")
    two_versions(root)
    bogus_newest(root)
    with caplog.at_level(logging.WARNING, logger="tiktok_pipelines.serving"):
        server = ModelServer(root, catalog_dir=tmp_path / "catalog", reload_interval_s=0.05)
    assert server.state is not None and server.state.seq == 2
    assert server.recommend(1, 3)["items"][0]["video_id"] == 14  # the delta is applied
    h = server.health()
    assert h["status"] == "degraded" and list(h["rejected_versions"]) == ["v00000003"]
    assert any("not the newest" in r for r in h["reasons"])
    assert sum("v00000003" in r.message for r in caplog.records) == 1


def test_a_running_server_logs_a_bogus_version_once_and_never_rehashes_it(tmp_path: Path, caplog,
                                                                          counted_hashing) -> None:
    root = tmp_path / "serving"
    write_catalog(tmp_path / "catalog")
    two_versions(root)
    server = ModelServer(root, catalog_dir=tmp_path / "catalog")
    assert server.state.seq == 2 and server.health()["status"] == "ok"
    hashed_at_start = len(counted_hashing)
    assert hashed_at_start > 0
    d = bogus_newest(root)
    (d / "tables").mkdir()  # a plausible-looking leftover
    with caplog.at_level(logging.WARNING, logger="tiktok_pipelines.serving"):
        for _ in range(20):
            assert server.reload() is False
    assert len(counted_hashing) == hashed_at_start, "unchanged versions were hashed again"
    assert sum("v00000003" in r.message for r in caplog.records) == 1
    assert server.reload_errors == 0
    assert server.health()["status"] == "degraded"
    # a real publication after it is loaded (the writer sets the bogus one aside first)
    p = ServingPublisher(root)
    p.publish(build_tables(), now_s=3, dense={"w": np.zeros(1)}, full=True)
    assert server.reload() is True
    assert server.health()["status"] == "ok", server.health()
    assert [x.name.startswith(".rejected-v00000003") for x in root.iterdir() if x.name.startswith(".rej")] == [True]


def test_a_corrupt_full_version_is_hashed_once_then_skipped(tmp_path: Path, counted_hashing) -> None:
    root = tmp_path / "serving"
    write_catalog(tmp_path / "catalog")
    p, tables = two_versions(root)
    p.publish(tables, now_s=3, dense={"w": np.ones(1)}, full=True)  # v3
    victim = next((version_dir(root, 3) / "tables" / "video_id").glob("*.parquet"))
    victim.write_bytes(victim.read_bytes()[:-7] + b"garbage")
    server = ModelServer(root, catalog_dir=tmp_path / "catalog")
    assert server.state.seq == 2
    n = len(counted_hashing)
    for _ in range(10):
        server.reload()
    assert len(counted_hashing) == n
    assert "checksum" in server.health()["rejected_versions"]["v00000003"]


def test_the_online_writer_sets_an_unverifiable_newest_version_aside(tmp_path: Path) -> None:
    root = tmp_path / "serving"
    _, tables = two_versions(root)
    bogus_newest(root)
    state = load_latest(root)
    assert state.seq == 2 and any("v00000003" in s for s in state.skipped)
    # what an online update does: resume from the state it loaded, publish a delta
    p = ServingPublisher(root)
    p.resume_from(state.seq)
    tables["user_id"].upsert_rows(np.array([2]), unit(1)[None, :], now_s=3)
    m = p.publish(tables, now_s=3)
    assert m["kind"] == "delta" and m["base_seq"] == 2 and m["seq"] == 3
    assert load_latest(root).seq == 3
    assert len(list(root.glob(".rejected-v00000003-*"))) == 1  # kept for a person to look at


def test_a_symlinked_version_from_outside_the_serving_root_is_refused(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "serving", tmp_path / "elsewhere"
    write_catalog(tmp_path / "catalog")
    two_versions(elsewhere)
    root.mkdir()
    shutil.copytree(version_dir(elsewhere, 1), version_dir(root, 1))
    version_dir(root, 2).symlink_to(version_dir(elsewhere, 2), target_is_directory=True)
    server = ModelServer(root, catalog_dir=tmp_path / "catalog")
    assert server.state.seq == 1
    assert "outside the serving root" in server.health()["rejected_versions"]["v00000002"]
    assert load_latest(root).seq == 1


def test_a_version_file_symlinked_outside_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "serving"
    two_versions(root)
    outside = tmp_path / "dense.npz"
    dense = version_dir(root, 1) / "dense.npz"
    shutil.copy(dense, outside)
    dense.unlink()
    dense.symlink_to(outside)  # same bytes, same checksum: only where it lives is wrong
    assert load_latest(root) is None  # v1 is refused, and v2 chains from it: nothing loads


def test_a_republished_seq_is_loaded_by_its_identity(tmp_path: Path) -> None:
    root = tmp_path / "serving"
    write_catalog(tmp_path / "catalog")
    ServingPublisher(root).publish(build_tables(), now_s=1, dense={"w": np.zeros(1)}, full=True)
    server = ModelServer(root, catalog_dir=tmp_path / "catalog")
    assert server.recommend(1, 1)["items"][0]["video_id"] == 13
    shutil.rmtree(version_dir(root, 1))
    tables = build_tables()
    tables["video_id"].upsert_rows(np.array([17]), unit(0, 5.0)[None, :], now_s=1)
    ServingPublisher(root).publish(tables, now_s=1, dense={"w": np.zeros(1)}, full=True)
    assert list_versions(root) == [1]
    assert server.reload() is True
    assert server.recommend(1, 1)["items"][0]["video_id"] == 17


def test_a_version_that_would_serve_nothing_is_never_swapped_in(tmp_path: Path) -> None:
    root = tmp_path / "serving"
    write_catalog(tmp_path / "catalog")
    p, tables = two_versions(root)
    server = ModelServer(root, catalog_dir=tmp_path / "catalog")
    assert server.state.seq == 2
    tables["video_id"].delete(np.array(VIDEOS))  # every video row gone
    p.publish(tables, now_s=3)
    assert server.reload() is False
    assert server.state.seq == 2 and len(server.recommend(1, 5)["items"]) == 5
    h = server.health()
    assert h["status"] == "degraded" and any("would serve nothing" in r for r in h["reasons"]), h
    # and it is not rebuilt at every poll
    built = []
    real = server._prepare
    server._prepare = lambda st: built.append(st.seq) or real(st)
    for _ in range(5):
        server.reload()
    assert built == []


def test_healthz_is_503_when_degraded_and_readyz_while_it_can_answer(tmp_path: Path) -> None:
    root = tmp_path / "serving"
    write_catalog(tmp_path / "catalog")
    two_versions(root)
    server = ModelServer(root, catalog_dir=tmp_path / "catalog", reload_interval_s=0.05)
    with served_over_http(server) as c:
        assert c.get("/healthz").status_code == 200
        bogus_newest(root)
        deadline = time.time() + 10
        while c.get("/healthz").status_code == 200 and time.time() < deadline:
            time.sleep(0.05)
        r = c.get("/healthz")
        assert r.status_code == 503 and r.json()["status"] == "degraded"
        assert "v00000003" in r.json()["rejected_versions"]
        assert c.get("/readyz").status_code == 200
        assert c.get("/recommend", params={"user_id": 1, "k": 3}).json()["items"]


def test_a_server_with_nothing_loadable_is_not_ready(tmp_path: Path) -> None:
    root = tmp_path / "serving"
    root.mkdir()
    bogus_newest(root, 1)
    server = ModelServer(root)
    h = server.health()
    assert server.state is None and h["status"] == "degraded" and "v00000001" in h["rejected_versions"]


def ttl_tables(n: int) -> dict[str, CollisionlessEmbeddingTable]:
    t = {s: CollisionlessEmbeddingTable(TableConfig(dim=2, init_scale=0.0, ttl_seconds=100), name=s)
         for s in ("user_id", "video_id")}
    for table in t.values():
        table.upsert_rows(np.arange(n), np.ones((n, 2), np.float32), now_s=1_000)
    return t


def test_expiry_may_not_empty_a_table_in_one_publication(tmp_path: Path) -> None:
    root = tmp_path / "serving"
    tables = ttl_tables(50)
    p = ServingPublisher(root)
    p.publish(tables, now_s=1_000, dense={"w": np.zeros(1)}, full=True)
    year_2099 = 4_102_444_800
    with pytest.raises(MassExpiry, match="50 of 50 rows"):
        p.publish(tables, now_s=year_2099)
    assert list_versions(root) == [1] and len(tables["video_id"]) == 50  # nothing changed
    # a normal expiry (a few idle rows) goes through
    tables["video_id"].lookup_or_insert(np.arange(45), now_s=1_500)  # trained again: not idle
    tables["user_id"].lookup_or_insert(np.arange(50), now_s=1_500)
    m = p.publish(tables, now_s=1_150)
    assert m["seq"] == 2 and len(tables["video_id"]) == 45
    # and a mass expiry that is meant goes through when asked for
    m = p.publish(tables, now_s=year_2099, allow_mass_expiry=True)
    assert m["seq"] == 3 and len(tables["video_id"]) == 0


def test_a_server_without_catalog_or_counters_answers(tmp_path: Path) -> None:
    """The per-video feature arrays of a server with no catalog and no counters are empty: a
    request gathered its candidates from them and failed with an IndexError (a 503) once they
    were built (found by tests/faults/test_kill_server.py, whose server has neither)."""
    root = tmp_path / "serving"
    ServingPublisher(root).publish(build_tables(), now_s=1, dense={"w": np.zeros(1)}, full=True)
    server = ModelServer(root)
    server.warm_up()
    assert [i["video_id"] for i in server.recommend(1, 2)["items"]][0] == 13
