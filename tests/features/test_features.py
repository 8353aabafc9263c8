"""Features on a hand-written lake: exact values, the point-in-time rule, idempotent rewrites of
a date in the Delta tables ``features/<entity>`` (local disk and S3)."""

from __future__ import annotations

import datetime as dt
import math
import threading

import duckdb
import pytest

from tests.features.conftest import (
    DAY,
    H,
    T,
    act,
    imp,
    publish_videos,
    view,
    write_events,
    write_scenario,
)
from tests.s3 import is_s3, lake_storage_options
from tiktok_pipelines.features import (
    ENTITIES,
    backfill_dates,
    compute_features,
    create_feature_views,
    feature_dates_written,
    feature_table,
    read_features,
    write_features,
)
from tiktok_pipelines.ingest.engine import Lake


@pytest.fixture
def lake(tmp_path):
    return write_scenario(tmp_path)


def rows(table, key: str) -> dict:
    return {r[key]: r for r in table.to_pylist()}


def compute_all(lake) -> dict:
    videos = lake.parent / "catalog" / "videos.parquet"
    return {e: compute_features(lake, e, DAY, videos) for e in ENTITIES}


def test_user_features_exact(lake):
    users = rows(compute_all(lake)["user"], "user_id")
    u1 = users[1]
    # three plays yesterday at 08:10, 08:50 and 20:30 UTC
    expected_hours = [0.0] * 24
    expected_hours[8], expected_hours[20] = 2 / 3, 1 / 3
    assert u1["hour_share_28d"] == pytest.approx(expected_hours)
    assert u1["peak_hour_28d"] == 8 and u1["active_days_28d"] == 1
    assert (u1["plays_1d"], u1["plays_7d"], u1["plays_28d"]) == (3, 3, 3)
    assert u1["impressions_1d"] == 4 and u1["play_rate_1d"] == pytest.approx(0.75)
    assert u1["like_rate_1d"] == pytest.approx(1 / 3) and u1["share_rate_1d"] == pytest.approx(1 / 3)
    assert u1["comment_rate_1d"] == 0.0
    # watch ratios 0.5, 1.0, 0.1; watch times 10 s, 30 s, 5 s (p90: linear interpolation)
    assert u1["watch_ratio_mean_28d"] == pytest.approx(1.6 / 3)
    assert u1["watch_ratio_p50_28d"] == pytest.approx(0.5) and u1["watch_ratio_p90_28d"] == pytest.approx(0.9)
    assert u1["watch_time_ms_mean_28d"] == pytest.approx(15_000)
    assert u1["watch_time_ms_p50_28d"] == pytest.approx(10_000)
    assert u1["watch_time_ms_p90_28d"] == pytest.approx(26_000)
    assert u1["watch_time_ms_1d"] == 45_000
    # dance: 10 s + 5 s of 45 s; food: 30 s
    aff = dict(u1["category_affinity_28d"])
    assert aff == pytest.approx({"food": 2 / 3, "dance": 1 / 3})
    assert u1["top_category_28d"] == "food"

    u2 = users[2]  # plays 2 h, 5 days, 21 days and 40 days before the cutoff
    assert (u2["plays_1d"], u2["plays_7d"], u2["plays_28d"]) == (1, 2, 3)
    assert u2["watch_time_ms_28d"] == 14_000
    assert dict(u2["category_affinity_28d"]) == {"unknown": 1.0}  # video 103 is not in the catalog
    assert u2["like_rate_28d"] == 0.0 and u2["play_rate_1d"] == 0.5

    u3 = users[3]  # only followed someone: counts are 0, per-view rates undefined
    assert u3["plays_28d"] == 0 and u3["like_rate_28d"] is None and u3["hour_share_28d"] is None
    assert u3["category_affinity_28d"] is None


def test_video_features_exact(lake):
    videos = rows(compute_all(lake)["video"], "video_id")
    # video 100: three impressions yesterday, one play -> CTR 1/3; its play watched half
    assert (videos[100]["impressions_1d"], videos[100]["plays_1d"]) == (3, 1)
    assert videos[100]["ctr_1d"] == pytest.approx(1 / 3) and videos[100]["completion_rate_1d"] == 0.0
    assert videos[100]["share_rate_1d"] == 1.0 and videos[100]["category"] == "dance"
    assert videos[101]["ctr_1d"] == 1.0 and videos[101]["completion_rate_1d"] == 1.0
    assert videos[101]["engagement_rate_1d"] == 1.0 and videos[101]["video_age_days"] == pytest.approx(2.0)
    # not in the catalog: creator from the events, category unknown
    assert videos[103]["creator_id"] == 9 and videos[103]["category"] == "unknown"
    assert (videos[103]["plays_1d"], videos[103]["plays_7d"]) == (1, 2)

    v = videos[200]  # six plays 3 days ago (the baseline), one 6 hours ago (one half-life)
    assert v["ctr_7d"] is None  # never shown in a feed: no impressions, CTR undefined
    decayed = 0.5 + 6 * 2.0 ** -12
    velocity = decayed * math.log(2) / 6 * 24
    assert v["play_velocity_per_day"] == pytest.approx(velocity)
    assert v["baseline_plays_per_day"] == pytest.approx(1.0)
    assert v["trending_score"] == pytest.approx(math.log((1 + velocity) / 2.0))
    assert v["completion_rate_7d"] == pytest.approx(1 / 7) and v["unique_viewers_7d"] == 7


def test_creator_features_exact(lake):
    creators = rows(compute_all(lake)["creator"], "creator_id")
    c7 = creators[7]
    # distinct followers: user 1 (9 days ago, again yesterday), user 2 (2 days ago), user 3 (yesterday)
    assert c7["followers"] == 3
    assert (c7["follower_growth_1d"], c7["follower_growth_7d"]) == (1, 2)
    assert c7["follower_growth_rate_7d"] == pytest.approx(2.0)  # 2 new on 1 follower a week ago
    assert c7["views_1d"] == 3 and c7["engagement_rate_1d"] == pytest.approx(2 / 3)
    assert c7["reach_1d"] == 1 and c7["full_watch_rate_1d"] == pytest.approx(1 / 3)
    c8 = creators[8]
    assert c8["followers"] == 0 and c8["views_7d"] == 7 and c8["reach_7d"] == 7
    assert c8["full_watch_rate_1d"] == 1.0 and c8["avg_watch_time_ms_7d"] == pytest.approx(16_000 / 7)


def test_events_at_or_after_the_cutoff_change_nothing_earlier_ones_do(lake):
    before = compute_all(lake)
    later = [view(T, 1, 100, 7, 20_000, 20_000), view(T + 5 * H, 4, 101, 7, 1, 30_000)]
    later_imps = [imp(T, 1, 100, 7), imp(T + H, 4, 200, 8)]
    later_acts = [act(T, 1, "like", 7, 100), act(T + H, 5, "follow", 7), act(T + 2 * H, 6, "follow", 8)]
    # in the feature date's own partition, in the next one, and misplaced in yesterday's directory
    for day, name in ((DAY, "same"), ("2026-11-11", "next"), ("2026-11-09", "misplaced")):
        write_events(lake, "views", later, name, day=day)
        write_events(lake, "impressions", later_imps, name, day=day)
        write_events(lake, "interactions", later_acts, name, day=day)
    after = compute_all(lake)
    for entity in ENTITIES:
        assert after[entity].equals(before[entity]), entity

    # One millisecond before the cutoff is part of the day's history.
    write_events(lake, "views", [view(T - 1, 1, 100, 7, 20_000, 20_000)], "last-ms")
    write_events(lake, "interactions", [act(T - 1, 5, "follow", 7)], "last-ms")
    changed = compute_all(lake)
    users, creators = rows(changed["user"], "user_id"), rows(changed["creator"], "creator_id")
    assert users[1]["plays_1d"] == 4 and users[1]["hour_share_28d"][23] == pytest.approx(0.25)
    assert rows(changed["video"], "video_id")[100]["completion_rate_1d"] == 0.5
    assert creators[7]["followers"] == 4 and creators[7]["follower_growth_1d"] == 2


def test_only_committed_files_are_read(lake):
    """Features read the events tables' committed snapshot: Parquet files dropped into the tables'
    folders (a dead writer's leftovers, never in the Delta log) change nothing, not even the dates
    the lake has."""
    import shutil

    before, dates = compute_all(lake), backfill_dates(lake)
    for stream in ("views", "impressions", "interactions"):
        committed = sorted((lake / "events" / stream / "event_date=2026-11-09").glob("*.parquet"))[0]
        shutil.copy(committed, committed.with_name("part-stray.parquet"))  # beside a committed file
        later = lake / "events" / stream / "event_date=2026-11-12"
        later.mkdir()
        shutil.copy(committed, later / "part-stray.parquet")  # a date the lake does not have
    after = compute_all(lake)
    for entity in ENTITIES:
        assert after[entity].equals(before[entity]), entity
    assert backfill_dates(lake) == dates


def test_write_is_atomic_idempotent_and_replaces(lake):
    videos = lake.parent / "catalog" / "videos.parquet"
    store = Lake(lake).store
    first = write_features(lake, "user", DAY, videos)
    assert first.table == store.uri(feature_table("user")) and first.rows == 10  # users 1, 2, 3, 50..55 and 60
    assert first.version == store.version(feature_table("user"))
    assert dict(first.schema)["feature_date"] == "DATE"  # the table's partition column, last
    table = read_features(lake, "user", days=[DAY])
    assert table.num_rows == 10 and set(table.column("feature_date").to_pylist()) == {dt.date(2026, 11, 10)}
    again = write_features(lake, "user", DAY, videos)
    assert again.rows == first.rows and again.version == first.version + 1
    assert read_features(lake, "user", days=[DAY]).equals(table)  # the same rows, replaced (not added)
    assert len(store.files(feature_table("user"))) == 1  # the snapshot names one build's file
    assert first.null_rates["like_rate_1d"] > 0 and first.null_rates["user_id"] == 0
    # the previous version is still readable (time travel), and holds the first build
    assert read_features(lake, "user", version=first.version).equals(table)

    write_events(lake, "views", [view(T - H, 99, 100, 7, 1_000, 20_000)], "new-user")
    third = write_features(lake, "user", DAY, videos)
    assert third.rows == first.rows + 1
    assert 99 in read_features(lake, "user", days=[DAY]).column("user_id").to_pylist()


def test_a_date_built_twice_holds_one_builds_rows_on_both_stores(tmp_path, lake_root):
    """Building a date again (also twice at once) replaces its rows in one transaction: the date
    holds one build's rows, never both builds' or none; other dates are untouched. (Creators: no
    float sums, so two builds' rows are equal to the bit on object storage too.)"""
    write_scenario(tmp_path, lake_root)
    videos = tmp_path / "catalog" / "videos.parquet"
    write_features(lake_root, "creator", "2026-11-09", videos)
    first = write_features(lake_root, "creator", DAY, videos)
    expected = read_features(lake_root, "creator", days=[DAY])
    assert first.rows == expected.num_rows == 3
    write_features(lake_root, "creator", DAY, videos)
    errors = []

    def build():
        try:
            write_features(lake_root, "creator", DAY, videos)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert read_features(lake_root, "creator", days=[DAY]).equals(expected)
    assert feature_dates_written(lake_root, "creator") == ["2026-11-09", DAY]
    by_date = read_features(lake_root, "creator")
    assert by_date.num_rows == expected.num_rows + read_features(lake_root, "creator", days=["2026-11-09"]).num_rows
    # the first build's version still reads as it was
    assert read_features(lake_root, "creator", days=[DAY], version=first.version).equals(expected)


def test_features_read_the_videos_dim_from_the_lake(tmp_path, lake_root):
    """Without a catalog file the features read the lake's ``dims/videos`` table (what dim_videos
    publishes), on either store: the same rows as from the export."""
    write_scenario(tmp_path, lake_root)
    from_file = compute_features(lake_root, "video", DAY, tmp_path / "catalog" / "videos.parquet")
    assert set(compute_features(lake_root, "video", DAY).column("category").to_pylist()) == {"unknown"}  # no dim yet
    publish_videos(lake_root)
    from_dim = compute_features(lake_root, "video", DAY)
    # (what the catalog informs; from object storage a float sum's last bit may vary with scan order)
    for col in ("video_id", "creator_id", "category", "video_age_days", "plays_7d"):
        assert from_dim.column(col).equals(from_file.column(col)), col


def test_an_outside_delta_reader_reads_the_features_and_dims(tmp_path, lake_root):
    """The tables are plain Delta: polars and delta-rs read them with no project code."""
    import polars as pl
    from deltalake import DeltaTable

    write_scenario(tmp_path, lake_root)
    publish_videos(lake_root)
    for day in ("2026-11-09", DAY):
        write_features(lake_root, "user", day)
    opts = lake_storage_options(lake_root)
    users = pl.scan_delta(f"{lake_root}/features/user", storage_options=opts)
    got = users.filter(pl.col("feature_date") == pl.date(2026, 11, 10)).select("user_id", "plays_1d", "top_category_28d")
    got = got.sort("user_id").collect()
    assert got.height == 10 and got.row(0) == (1, 3, "food")
    assert users.select(pl.col("feature_date").n_unique()).collect().item() == 2
    assert users.collect_schema()["feature_date"] == pl.Date
    assert DeltaTable(f"{lake_root}/features/user", storage_options=opts).metadata().partition_columns == [
        "feature_date"]
    videos = pl.scan_delta(f"{lake_root}/dims/videos", storage_options=opts).collect()
    assert sorted(videos["video_id"].to_list()) == [100, 101, 102, 200]
    assert DeltaTable(f"{lake_root}/dims/videos", storage_options=opts).to_pyarrow_table().num_rows == 4
    if not is_s3(lake_root):
        assert not list((tmp_path / "lake" / "features" / "user").rglob("part.parquet"))


def test_views_over_every_partition_and_empty_views(tmp_path, lake_root):
    write_scenario(tmp_path, lake_root)
    videos = tmp_path / "catalog" / "videos.parquet"
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    # before anything is written the views exist, typed and empty (SQL referencing them compiles)
    assert create_feature_views(con, lake_root) == {"user": 0, "video": 0, "creator": 0}
    assert con.sql("SELECT count(*) FROM features.creator_daily").fetchall() == [(0,)]
    cols = {r[0]: r[1] for r in con.sql("DESCRIBE features.user_daily").fetchall()}
    assert cols["feature_date"] == "DATE" and cols["category_affinity_28d"] == "MAP(VARCHAR, DOUBLE)"
    for day in ("2026-11-09", DAY):
        for e in ENTITIES:
            write_features(lake_root, e, day, videos)
    assert create_feature_views(con, lake_root)["video"] == 2
    got = con.sql("SELECT feature_date::VARCHAR, followers FROM features.creator_daily "
                  "WHERE creator_id = 7 ORDER BY 1").fetchall()
    # as of 11-09 00:00, user 3's and user 1's follows of 11-09 had not happened
    assert got == [("2026-11-09", 2), (DAY, 3)]
    cols = {r[0]: r[1] for r in con.sql("DESCRIBE features.user_daily").fetchall()}
    assert "DOUBLE[]" in set(cols.values()) and cols["feature_date"] == "DATE"
    assert cols["category_affinity_28d"] == "MAP(VARCHAR, DOUBLE)"
    # local disk: views over the committed version's files; object storage: tables loaded from it
    kinds = dict(con.sql("SELECT view_name, 'view' FROM duckdb_views() WHERE schema_name = 'features' UNION ALL "
                         "SELECT table_name, 'table' FROM duckdb_tables() WHERE schema_name = 'features'").fetchall())
    assert kinds["user_daily"] == ("table" if is_s3(lake_root) else "view")
    # a rebuild shows up at the next refresh, replacing the date's rows
    write_events(lake_root, "interactions", [act(T - H, 42, "follow", 7)], "new-follower")
    write_features(lake_root, "creator", DAY, videos)
    create_feature_views(con, lake_root)
    assert con.sql("SELECT followers FROM features.creator_daily WHERE creator_id = 7 AND feature_date = "
                   f"DATE '{DAY}'").fetchall() == [(4,)]
    con.close()


def test_backfill_dates_span_first_event_day_through_day_after_last(lake):
    dates = backfill_dates(lake)
    assert dates[0] == "2026-10-01" and dates[-1] == DAY  # last event day 11-09, plus one
    assert len(dates) == 41
