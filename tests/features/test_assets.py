"""The feature assets through real Dagster: one partition at a time, views in the warehouse, the
schedule's partition, and the build_all / features_daily split."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pytest

from tests.features.conftest import (
    DAY,
    D,
    H,
    T,
    act,
    imp,
    publish_videos,
    view,
    write_events,
    write_scenario,
)
from tiktok_pipelines.defs.features.assets import (
    FEATURE_KEYS,
    backfill_features,
    creator_features,
    feature_assets,
    features_daily,
)
from tiktok_pipelines.defs.resources import PlatformStorage
from tiktok_pipelines.defs.warehouse.assets import WAREHOUSE_POOL, analytics_db


@pytest.fixture
def instance():
    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1}}}) as inst:
        yield inst


def test_materialize_one_partition_then_another_views_see_both(tmp_path, instance):
    write_scenario(tmp_path)
    resources = {"storage": PlatformStorage(data_dir=str(tmp_path))}
    result = dg.materialize(feature_assets, partition_key=DAY, resources=resources, instance=instance)
    assert result.success
    mats = [e.materialization for e in result.get_asset_materialization_events()]
    meta = {m.asset_key.to_user_string(): m.metadata for m in mats}
    assert {m.partition for m in mats} == {DAY} and len(mats) == 3
    assert meta["user_features"]["dagster/row_count"].value == 10
    assert meta["video_features"]["dagster/row_count"].value == 5
    assert meta["creator_features"]["dagster/row_count"].value == 3
    assert meta["creator_features"]["followers_total"].value == 3.0
    assert "like_rate_1d" in meta["user_features"]["null_rates"].value
    cols = {c.name for c in meta["video_features"]["dagster/column_schema"].schema.columns}
    assert {"ctr_1d", "trending_score", "completion_rate_7d", "feature_date"} <= cols
    store = PlatformStorage(data_dir=str(tmp_path)).lake_store
    for entity in ("user", "video", "creator"):
        assert meta[f"{entity}_features"]["path"].value == store.uri(f"features/{entity}")
        assert meta[f"{entity}_features"]["table_version"].value == store.version(f"features/{entity}")

    second = dg.materialize([creator_features], partition_key="2026-11-09", resources=resources, instance=instance)
    assert second.success
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        got = con.sql("SELECT feature_date::VARCHAR, followers FROM features.creator_daily "
                      "WHERE creator_id = 7 ORDER BY 1").fetchall()
        assert got == [("2026-11-09", 2), (DAY, 3)]
        top = con.sql("SELECT top_category_28d FROM features.user_daily WHERE user_id = 1").fetchall()
        assert top == [("food",)]
        assert con.sql("SELECT count(*) FROM features.video_daily").fetchall() == [(5,)]
    finally:
        con.close()
    # the partition is recorded per asset, so the UI shows which dates exist
    assert instance.get_materialized_partitions(dg.AssetKey("creator_features")) == {"2026-11-09", DAY}


def test_backfill_runs_each_partition_then_republishes_analytics(tmp_path, instance):
    lake = tmp_path / "lake"
    publish_videos(lake)  # the validated copy dim_videos publishes (dims/videos)
    write_events(lake, "views", [view(T - 2 * D + H, 1, 100, 7, 10_000, 20_000)], "a")
    write_events(lake, "views", [view(T - D + H, 1, 101, 7, 30_000, 30_000)], "b")
    write_events(lake, "impressions", [imp(T - D + H, 1, 101, 7)], "a")
    write_events(lake, "interactions", [act(T - D + 2 * H, 1, "follow", 7)], "a")

    # An unpartitioned consumer of a feature view (as a SQL model that refs one would be): it is
    # rebuilt after the partitions, so it sees them.
    seen = []

    @dg.asset(deps=[creator_features], pool=WAREHOUSE_POOL)
    def feature_consumer(storage: PlatformStorage) -> None:
        con = duckdb.connect(str(storage.warehouse), read_only=True)
        seen.append(con.sql("SELECT count(*) FROM features.creator_daily").fetchall()[0][0])
        con.close()

    defs = dg.Definitions(assets=[*feature_assets, feature_consumer, analytics_db], jobs=[features_daily],
                          resources={"storage": PlatformStorage(data_dir=str(tmp_path))})
    # On 11-09 the partitions end at 11-09: the lake informs 11-08..11-10, 11-10 does not exist yet.
    summary = backfill_features(defs, instance, today=dt.date(2026, 11, 9))
    assert summary == {"partitions": ["2026-11-08", "2026-11-09"], "failed": [],
                       "outside_partitions": [DAY], "downstream": ["analytics_db", "feature_consumer"],
                       "analytics_republished": True, "success": True}
    assert seen == [1]  # creator 7, as of 11-09
    con = duckdb.connect(str(tmp_path / "analytics.duckdb"), read_only=True)
    try:
        got = con.sql("SELECT feature_date::VARCHAR, plays_1d, category_affinity_28d['dance'] "
                      "FROM features.user_daily ORDER BY 1").fetchall()
        # as of 11-08 00:00 nothing had happened: an empty partition, no row
        assert got == [("2026-11-09", 1, 1.0)]
    finally:
        con.close()


def test_definitions_split_build_all_from_the_partitioned_job():
    from tiktok_pipelines.definitions import defs as load_defs

    defs = load_defs()
    graph = defs.resolve_asset_graph()
    assert {k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "features"} == set(FEATURE_KEYS)
    for key in FEATURE_KEYS:
        node = graph.get(key)
        assert node.pools == {WAREHOUSE_POOL}
        assert {"raw_views", "raw_interactions"} <= {k.to_user_string() for k in node.parent_keys}
        assert node.partitions_def.end_offset == 1
    assert "dim_videos" in {k.to_user_string() for k in graph.get(dg.AssetKey("user_features")).parent_keys}

    build_all = defs.resolve_job_def("build_all")
    assert build_all.partitions_def is None
    assert not set(FEATURE_KEYS) & set(build_all.asset_layer.executable_asset_keys)
    assert dg.AssetKey("analytics_db") in build_all.asset_layer.executable_asset_keys
    job = defs.resolve_job_def("features_daily")
    assert set(job.asset_layer.executable_asset_keys) == set(FEATURE_KEYS)
    assert job.partitions_def is not None

    schedule = defs.resolve_schedule_def("features_daily_schedule")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "UTC"
    # at 02:00 on 11-20 the schedule computes the features as of 11-20 00:00
    with dg.instance_for_test() as inst:
        context = dg.build_schedule_context(
            instance=inst, scheduled_execution_time=dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.timezone.utc))
        requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2026-11-20"]


@pytest.mark.slow
def test_cli_build_all_materialises_features_and_publishes_the_views(tmp_path, monkeypatch, capsys):
    import json

    from tiktok_pipelines.cli import main

    data = tmp_path / "data"
    assert main(["simulate", "--out", str(data), "--users", "300", "--videos", "500", "--days", "2",
                 "--events-per-day", "6000", "--kuairec", "none"]) == 0
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("TIKTOK_DATA_DIR", str(data))
    capsys.readouterr()
    assert main(["run", "build_all"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["success"] is True
    assert summary["features"]["partitions"] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    con = duckdb.connect(str(data / "analytics.duckdb"), read_only=True)
    try:
        by_date = dict(con.sql("SELECT feature_date::VARCHAR, count(*) FROM features.video_daily GROUP BY 1").fetchall())
        assert set(by_date) == {"2026-11-02", "2026-11-03"} and by_date["2026-11-03"] > 100
        n = con.sql("SELECT count(*) FROM features.user_daily WHERE feature_date = '2026-11-03' "
                    "AND abs(list_sum(hour_share_28d) - 1) < 1e-9").fetchall()[0][0]
        assert n > 100
    finally:
        con.close()
