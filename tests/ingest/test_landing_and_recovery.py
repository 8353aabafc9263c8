"""Landing-path safety, idempotent re-ingest, and a batch whose writer died mid-commit finished exactly once."""

from __future__ import annotations

import os

import pytest
from deltalake import DeltaTable

from tests.ingest.conftest import dumps, valid_record, write_landing
from tiktok_pipelines.ingest.engine import Lake, audit_batch, ingest_files
from tiktok_pipelines.ingest.landing import UnsafeLandingPath, list_landing_files, safe_landing_path, stat_landing_file
from tiktok_pipelines.schemas import STREAMS
from tiktok_pipelines.tables import TableStore


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
    """The committed event ids, read through the Delta log (an orphan file a dead writer left
    in a table's folder is not in it)."""
    return sorted(DeltaTable(str(lake / "events" / "views")).to_pyarrow_table(columns=["event_id"])
                  .column("event_id").to_pylist())


def _ingest_dying_mid_publish(landing, lake, monkeypatch, fail_after_commits: int) -> str:
    """An ingest of every landing file that dies after ``fail_after_commits`` of its table
    commits (events, quarantine, ingest log, in that order); returns the dead batch's id."""
    calls = {"n": 0}

    def dying(real):
        def commit(self, *args, **kwargs):
            if calls["n"] >= fail_after_commits:
                raise OSError("simulated crash while committing")
            calls["n"] += 1
            return real(self, *args, **kwargs)
        return commit

    with monkeypatch.context() as m:
        m.setattr(TableStore, "commit_files", dying(TableStore.commit_files))
        m.setattr(TableStore, "commit", dying(TableStore.commit))
        with pytest.raises(OSError):
            ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    _, plan = Lake(lake).state()
    assert plan is not None, "the dead batch should still be in flight"
    return plan["batch_id"]


@pytest.mark.parametrize("fail_after_commits", [0, 1, 2])
def test_crash_mid_commit_is_finished_exactly_once_before_new_files(fail_after_commits, dirs, monkeypatch):
    landing, lake = dirs
    schema = STREAMS["views"]
    # Two dates and a quarantined line: three table commits (events, quarantine, ingest log), so
    # the crash can fall before any of them.
    recs = [valid_record(schema, i) for i in range(20)]
    for r in recs[:5]:
        r["ts_ms"] -= 86_400_000
    write_landing(landing, "views", [dumps(r) for r in recs] + ["{broken"], seq=1)

    dead = _ingest_dying_mid_publish(landing, lake, monkeypatch, fail_after_commits)
    # A file arrives before the next run, repeating one event of the dead batch: the next writer
    # finishes the dead batch from its plan first, then judges the new file against it.
    write_landing(landing, "views", [dumps(recs[0]), dumps(valid_record(schema, 99))], seq=2)
    report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    assert report.resumed_batches == [dead]
    assert report.batch_id != dead and report.totals()["rows_duplicate"] == 1
    assert _lake_ids(lake) == sorted([r["event_id"] for r in recs] + [valid_record(schema, 99)["event_id"]])
    assert audit_batch(lake, landing, dead) == [] and audit_batch(lake, landing, report.batch_id) == []
    log = Lake(lake).read_ingest_log()
    assert sorted(log.column("batch_id").to_pylist()) == sorted([dead, report.batch_id])
    assert sum(log.column("rows_quarantine").to_pylist()) == 1
    assert Lake(lake).state()[1] is None
    # Each table holds each batch's transaction once.
    for table in ("events/views", "quarantine", "ingest_log"):
        assert DeltaTable(str(lake / table)).transaction_version(f"ingest:{dead}") == 1


@pytest.mark.parametrize("fail_after_commits", [0, 1, 2])
def test_crash_mid_publish_with_hostile_files_then_reingest_quarantines_each_once(fail_after_commits, dirs,
                                                                                   monkeypatch):
    """Issue 15 in the fault suite: a batch holding files quarantined whole (an impossible date, a
    flush time in 2099) and a re-send re-stamped to another date dies while publishing. The retry
    finishes it and commits once: the hostile files' lines in quarantine once each, and the
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

    dead = _ingest_dying_mid_publish(landing, lake, monkeypatch, fail_after_commits)

    report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    assert report.resumed_batches == [dead] and report.batch_id is None
    assert _lake_ids(lake) == sorted(["A"] + [r["event_id"] for r in recs])
    reasons = sorted(DeltaTable(str(lake / "quarantine")).to_pyarrow_table(columns=["reason"])
                     .column("reason").to_pylist())
    assert reasons == ["conflicting_duplicate", "future_flush_time", "invalid_flush_time", "invalid_flush_time"]
    log = Lake(lake).read_ingest_log().to_pylist()
    assert sorted(r["file_reason"] for r in log if r["file_reason"]) == ["future_flush_time", "invalid_flush_time"]
    assert audit_batch(lake, landing, dead) == []
    assert Lake(lake).state()[1] is None
