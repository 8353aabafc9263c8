"""The training_examples checks' counts without Dagster: rows that break each rule are counted."""

from __future__ import annotations

import duckdb

from tiktok_pipelines.training.example_checks import COUNTS, by_date, failing_counts

DAY_MS = 86_400_000
T0 = 1_793_491_200_000  # 2026-11-01 00:00 UTC


def _examples(con, rows):
    con.execute("""CREATE TABLE ex (example_id VARCHAR, ts_ms BIGINT, user_id BIGINT, video_id BIGINT,
        request_id VARCHAR, event_date DATE, played BOOLEAN, finished BOOLEAN, liked BOOLEAN, shared BOOLEAN,
        commented BOOLEAN, followed BOOLEAN, engaged BOOLEAN, watch_ratio DOUBLE, sample_rate DOUBLE,
        video_age_h DOUBLE)""")
    con.executemany(f"INSERT INTO ex VALUES ({', '.join('?' * 16)})", rows)
    return "ex"


def _row(i, *, ts=T0, day="2026-11-01", engaged=False, finished=False, ratio=0.5, rate=0.25, age=1.0,
         example_id=None):
    return (example_id or f"e{i}", ts, 1, 2, "r", day, True, finished, False, False, False, False, engaged,
            ratio, rate, age)


def test_good_rows_break_nothing_and_bad_rows_are_counted() -> None:
    con = duckdb.connect()
    source = _examples(con, [
        _row(1), _row(2, engaged=True, ratio=1.2, finished=True, rate=1.0, ts=T0 + DAY_MS, day="2026-11-02"),
        _row(3, engaged=True, ratio=0.1, rate=1.0),  # engaged without an action or the watch ratio
        _row(4, rate=1.0),                           # a negative kept at rate 1, not r
        _row(5, example_id="e1"),                    # a duplicated id
        _row(6, day="2026-11-02"),                   # filed under another date than its time's
        _row(7, age=-2.0),                           # a video served before it was published
    ])
    counts = failing_counts(con, source, negative_rate=0.25, engaged_watch_ratio=0.9)
    assert counts == {"rows": 7, "null_labels": 0, "inconsistent_labels": 1, "bad_sample_rate": 1, "null_keys": 0,
                      "duplicate_ids": 1, "misdated": 1, "video_after_impression": 1}
    assert by_date(con, source) == [("2026-11-01", 5, 0.2, 1.0, 0.0), ("2026-11-02", 2, 0.5, 1.0, 0.5)]


def test_nulls_in_labels_and_keys() -> None:
    con = duckdb.connect()
    bad = list(_row(1))
    bad[12] = None  # engaged
    bad[4] = None  # request_id
    source = _examples(con, [tuple(bad), _row(2)])
    counts = failing_counts(con, source, negative_rate=0.25, engaged_watch_ratio=0.9)
    assert counts["null_labels"] == 1 and counts["null_keys"] == 1 and counts["rows"] == 2


def test_no_examples_yet_counts_nothing() -> None:
    assert failing_counts(duckdb.connect(), None, negative_rate=0.1, engaged_watch_ratio=0.9) == dict.fromkeys(COUNTS, 0)
