"""Review finding 9: an event re-sent with another timestamp (so another date partition) was stored
twice, because the dedupe compared ids only with the partitions of the dates the batch touched.

Now the dedupe compares every valid event with the lake's partitions within ``max_lateness_days``
of the chunk's dates, so an ``event_id`` is unique in the lake among copies dated within the
lateness of each other: a re-send is an exact duplicate when its payload (every typed value, the
timestamp included) is the same, and a conflicting duplicate otherwise, whatever its date. The
``event_id_unique`` check covers the same window, not only the partitions the run touched.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from tests.dagster.conftest import resources_for
from tests.ingest.conftest import FLUSHED_AT_MS, TS_MS, dumps, valid_record, write_landing
from tiktok_pipelines.defs.ingest.assets import ingest_landing
from tiktok_pipelines.ingest.engine import IngestSettings, audit_batch, duplicate_event_ids, ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.schemas import STREAMS

VIEWS = STREAMS["views"]
DAY = 86_400_000


def _ingest(landing, lake, now_ms, **settings):
    return ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake,
                        settings=IngestSettings(**settings), now_ms=now_ms)


def _rows(lake, event_id):
    views = DeltaTable(str(lake / "events" / "views")).to_pyarrow_dataset()  # noqa: F841 (read by DuckDB)
    return duckdb.sql(f"SELECT event_date::VARCHAR, _src_file FROM views WHERE event_id = '{event_id}' "
                      "ORDER BY 1").fetchall()


def _quarantined(lake):
    quarantine = DeltaTable(str(lake / "quarantine")).to_pyarrow_dataset()  # noqa: F841 (read by DuckDB)
    return sorted(duckdb.sql("SELECT event_id, reason FROM quarantine").fetchall())


def test_a_resend_on_another_date_in_a_later_batch_is_not_stored_twice(dirs):
    landing, lake = dirs
    a = valid_record(VIEWS, 0, event_id="A")  # ts 2026-11-02 11:00
    b = valid_record(VIEWS, 1, event_id="B")
    first = write_landing(landing, "views", [dumps(a), dumps(b)], seq=1)
    assert _ingest(landing, lake, FLUSHED_AT_MS).totals()["rows_lake"] == 2
    # A day later the client re-sends A re-stamped (next day) and B re-stamped two days back (late):
    # the batch touches neither copy's date (2026-11-02).
    a_next_day = dict(a, ts_ms=a["ts_ms"] + DAY)
    b_back = dict(b, ts_ms=b["ts_ms"] - 2 * DAY)
    write_landing(landing, "views", [dumps(a_next_day), dumps(b_back)], seq=2,
                  flushed_at_ms=FLUSHED_AT_MS + DAY)
    second = _ingest(landing, lake, FLUSHED_AT_MS + DAY)
    assert second.totals() == {"files": 1, "rows_read": 2, "rows_lake": 0, "rows_quarantine": 2,
                               "rows_duplicate": 0}
    assert _quarantined(lake) == [("A", "conflicting_duplicate"), ("B", "conflicting_duplicate")]
    # The first copy stays, alone.
    assert _rows(lake, "A") == [("2026-11-02", first)] and _rows(lake, "B") == [("2026-11-02", first)]
    assert audit_batch(lake, landing, second.batch_id) == []
    # The same payload again (so the same timestamp and date) is an exact duplicate, as before.
    write_landing(landing, "views", [dumps(b)], seq=3, flushed_at_ms=FLUSHED_AT_MS + DAY)
    assert _ingest(landing, lake, FLUSHED_AT_MS + DAY).totals()["rows_duplicate"] == 1
    assert duplicate_event_ids(lake, "views", ["2026-11-02"], lateness_days=30) == 0


def test_a_resend_on_another_date_in_the_same_batch_is_not_stored_twice(dirs):
    landing, lake = dirs
    a = valid_record(VIEWS, 0, event_id="A")
    write_landing(landing, "views", [dumps(a)], seq=1)
    write_landing(landing, "views", [dumps(dict(a, ts_ms=a["ts_ms"] - 3 * DAY)), dumps(a)], seq=2,
                  flushed_at_ms=FLUSHED_AT_MS + 60_000)
    report = _ingest(landing, lake, FLUSHED_AT_MS + 60_000, chunk_bytes=1)  # one chunk per file
    assert report.totals()["rows_lake"] == 1 and report.totals()["rows_duplicate"] == 1
    assert _quarantined(lake) == [("A", "conflicting_duplicate")]
    assert len(_rows(lake, "A")) == 1


def test_the_dedupe_window_is_the_allowed_lateness(dirs):
    """Copies dated further apart than max_lateness_days are not compared (the documented limit);
    every copy within it is, on either side."""
    landing, lake = dirs
    a = valid_record(VIEWS, 0, event_id="A")
    write_landing(landing, "views", [dumps(a)], seq=1)
    _ingest(landing, lake, FLUSHED_AT_MS, max_lateness_days=2)
    within = dict(a, ts_ms=TS_MS + 2 * DAY)  # two days after the first copy: within 2 days
    beyond = dict(a, event_id="A", ts_ms=TS_MS + 3 * DAY, user_id=4242)
    write_landing(landing, "views", [dumps(within)], seq=2, flushed_at_ms=FLUSHED_AT_MS + 2 * DAY)
    write_landing(landing, "views", [dumps(beyond)], seq=3, flushed_at_ms=FLUSHED_AT_MS + 3 * DAY)
    r = ingest_files([f for f in list_landing_files(landing) if f.rel_path.endswith("000002.ndjson")],
                     landing_root=landing, lake_root=lake, settings=IngestSettings(max_lateness_days=2),
                     now_ms=FLUSHED_AT_MS + 2 * DAY)
    assert r.totals()["rows_quarantine"] == 1
    # Three days after the only copy in the lake: beyond the window, so kept.
    r = _ingest(landing, lake, FLUSHED_AT_MS + 3 * DAY, max_lateness_days=2)
    assert r.totals()["rows_lake"] == 1
    assert [d for d, _ in _rows(lake, "A")] == ["2026-11-02", "2026-11-05"]
    assert duplicate_event_ids(lake, "views", ["2026-11-05"], lateness_days=2) == 0


def test_the_event_id_unique_check_covers_the_lateness_window(tmp_path):
    """A copy of a touched partition's event in a partition this run does not touch, within the
    lateness, fails the check (it used to look at the touched partitions only)."""
    data = tmp_path / "data"
    landing, lake = data / "landing", data / "lake"
    write_landing(landing, "views", [dumps(valid_record(VIEWS, 0, event_id="A"))], seq=1)
    with dg.instance_for_test() as instance:
        assert dg.materialize([ingest_landing], resources=resources_for(data), instance=instance).success
        # Someone commits a copy of a partition's rows into the day before (a bad manual backfill).
        table = str(lake / "events" / "views")
        rows = DeltaTable(table).to_pyarrow_table()
        rows = rows.set_column(rows.schema.get_field_index("event_date"), "event_date",
                               pa.array([dt.date(2026, 11, 1)] * rows.num_rows, pa.date32()))
        write_deltalake(table, rows, mode="append")
        # The next run touches only 2026-11-02 (and adds no duplicate itself).
        write_landing(landing, "views", [dumps(valid_record(VIEWS, 1, event_id="B"))], seq=2,
                      flushed_at_ms=FLUSHED_AT_MS + 60_000)
        result = dg.materialize([ingest_landing], resources=resources_for(data), instance=instance)
        checks = {(c.asset_key.path[-1], c.check_name): c for c in result.get_asset_check_evaluations()}
        check = checks[("raw_views", "event_id_unique")]
        assert not check.passed
        assert check.metadata["duplicate_event_ids"].value == 1
        assert check.metadata["partitions_checked"].value == 2
