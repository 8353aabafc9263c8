"""Landing-path safety, idempotent re-ingest, and recovery from a writer that died mid-publish."""

from __future__ import annotations

import os

import duckdb
import pytest

from tests.ingest.conftest import dumps, valid_record, write_landing
from tiktok_pipelines.ingest import engine
from tiktok_pipelines.ingest.engine import audit_batch, ingest_files
from tiktok_pipelines.ingest.landing import UnsafeLandingPath, list_landing_files, safe_landing_path, stat_landing_file
from tiktok_pipelines.schemas import STREAMS


@pytest.mark.parametrize(
    "rel",
    ["../etc/passwd", "/etc/passwd", "views/../../x.ndjson", "views/./a.ndjson", "", "C:/x.ndjson"],
)
def test_unsafe_paths_are_refused(rel, dirs):
    landing, _ = dirs
    with pytest.raises(UnsafeLandingPath):
        safe_landing_path(landing, rel)


def test_symlinks_out_of_landing_are_refused_and_not_listed(dirs, tmp_path):
    landing, _ = dirs
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "views-20261102T120000Z-000009.ndjson").write_text(dumps(valid_record(STREAMS["views"])) + "\n")
    (landing / "views").mkdir()
    os.symlink(outside, landing / "views" / "dt=2026-11-02")
    assert list_landing_files(landing) == []
    with pytest.raises(UnsafeLandingPath):
        stat_landing_file(landing, "views/dt=2026-11-02/views-20261102T120000Z-000009.ndjson")


def test_unknown_stream_refused(dirs):
    landing, _ = dirs
    (landing / "secrets").mkdir()
    (landing / "secrets" / "a.ndjson").write_text("{}\n")
    with pytest.raises(UnsafeLandingPath):
        stat_landing_file(landing, "secrets/a.ndjson")


def test_hidden_temp_files_are_not_listed(dirs):
    landing, _ = dirs
    rel = write_landing(landing, "views", [dumps(valid_record(STREAMS["views"]))])
    (landing / rel).with_name(".in-flight.ndjson.tmp").write_text("{}\n")
    assert [f.rel_path for f in list_landing_files(landing)] == [rel]


def test_reingest_changes_nothing(dirs):
    landing, lake = dirs
    schema = STREAMS["views"]
    write_landing(landing, "views", [dumps(valid_record(schema, i)) for i in range(50)] + ["nope"])
    first = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    snapshot = sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet"))
    again = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    assert first.totals()["rows_lake"] == 50 and first.totals()["rows_quarantine"] == 1
    assert again.batch_id is None and len(again.skipped_files) == 1
    assert sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet")) == snapshot


def _lake_ids(lake):
    return sorted(r[0] for r in duckdb.sql(
        f"SELECT event_id FROM read_parquet('{lake}/events/*/*/*.parquet')").fetchall())


def _ingest_dying_mid_publish(landing, lake, monkeypatch, fail_after_moves: int) -> None:
    """An ingest of every landing file that dies after moving ``fail_after_moves`` of its staged
    Parquet files into the lake (before its commit record)."""
    real_replace = os.replace
    calls = {"n": 0}

    def dying_replace(src, dst):
        if "/_staging/" in str(src) and "ingest_log" not in str(src):
            if calls["n"] >= fail_after_moves:
                raise OSError("simulated crash while publishing")
            calls["n"] += 1
        return real_replace(src, dst)

    monkeypatch.setattr(engine.os, "replace", dying_replace)
    with pytest.raises(OSError):
        ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    monkeypatch.setattr(engine.os, "replace", real_replace)


@pytest.mark.parametrize("fail_after_moves", [0, 1, 2])
def test_crash_mid_publish_rolls_back_then_reingests_exactly_once(fail_after_moves, dirs, monkeypatch):
    landing, lake = dirs
    schema = STREAMS["views"]
    # Two dates and a quarantined line: three files to move into the lake, so the crash can fall
    # between any two of them.
    recs = [valid_record(schema, i) for i in range(20)]
    for r in recs[:5]:
        r["ts_ms"] -= 86_400_000
    write_landing(landing, "views", [dumps(r) for r in recs] + ["{broken"])

    _ingest_dying_mid_publish(landing, lake, monkeypatch, fail_after_moves)

    # The dead batch left a pending manifest; nothing it published counts as committed.
    assert list((lake / "_pending").glob("*.json"))
    report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    assert report.rolled_back_batches
    assert _lake_ids(lake) == sorted(r["event_id"] for r in recs)
    assert report.totals()["rows_quarantine"] == 1
    assert audit_batch(lake, landing, report.batch_id) == []
    assert not list((lake / "_pending").glob("*.json"))


@pytest.mark.parametrize("fail_after_moves", [0, 1, 2])
def test_crash_mid_publish_with_hostile_files_then_reingest_quarantines_each_once(fail_after_moves, dirs,
                                                                                   monkeypatch):
    """Issue 15 in the fault suite: a batch holding files quarantined whole (an impossible date, a
    flush time in 2099) and a re-send re-stamped to another date dies while publishing. The retry
    rolls it back and commits once: the hostile files' lines in quarantine once each, and the
    re-send judged against the first copy (a conflict), not against the dead batch's own copy."""
    landing, lake = dirs
    schema = STREAMS["views"]
    a = valid_record(schema, 0, event_id="A")
    write_landing(landing, "views", [dumps(a)], seq=1)
    ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    # The next batch: new events on two dates, A re-stamped a day later, and two hostile files.
    recs = [valid_record(schema, i, event_id=f"n{i}") for i in range(1, 6)]
    recs[0]["ts_ms"] -= 86_400_000
    write_landing(landing, "views", [dumps(r) for r in recs] + [dumps(dict(a, ts_ms=a["ts_ms"] + 86_400_000))],
                  seq=2, flushed_at_ms=a["ts_ms"] + 86_400_000 + 60_000)
    dt_dir = landing / "views" / "dt=2026-11-02"
    (dt_dir / "views-20261399T120000Z-000003.ndjson").write_text(dumps(valid_record(schema, 7)) + "\nbad\n")
    (dt_dir / "views-20991231T000000Z-000004.ndjson").write_text(dumps(valid_record(schema, 8)) + "\n")

    _ingest_dying_mid_publish(landing, lake, monkeypatch, fail_after_moves)

    report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    assert report.rolled_back_batches
    assert _lake_ids(lake) == sorted(["A"] + [r["event_id"] for r in recs])
    reasons = sorted(duckdb.sql(f"SELECT reason FROM read_parquet('{lake}/quarantine/*.parquet')").fetchall())
    assert reasons == [("conflicting_duplicate",), ("future_flush_time",), ("invalid_flush_time",),
                       ("invalid_flush_time",)]
    assert sorted(r for _, r in report.quarantined_files()) == ["future_flush_time", "invalid_flush_time"]
    assert audit_batch(lake, landing, report.batch_id) == []
    assert not list((lake / "_pending").glob("*.json"))
