"""The feature assets through real Dagster: one partition at a time, views in the warehouse, the
partitions from the lake's dates, the schedule's partition, and the build_all / features_daily split."""

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
    FEATURE_DATES,
    FEATURE_KEYS,
    backfill_features,
    creator_features,
    feature_assets,
    features_daily,
    features_daily_schedule,
)
from tiktok_pipelines.defs.features.sensors import feature_dates_sensor
from tiktok_pipelines.defs.resources import PlatformStorage
from tiktok_pipelines.features import as_of_ms
from tiktok_pipelines.defs.warehouse.assets import WAREHOUSE_POOL, analytics_db
from tiktok_pipelines.warehouse import connect_analytics


@pytest.fixture
def instance():
    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1}}}) as inst:
        yield inst


def test_materialize_one_partition_then_another_views_see_both(tmp_path, instance):
    write_scenario(tmp_path)
    resources = {"storage": PlatformStorage(data_dir=str(tmp_path))}
    instance.add_dynamic_partitions(FEATURE_DATES, [DAY, "2026-11-09"])
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
    # On 11-09 the lake informs 11-08..11-10, and 11-10 is not complete yet (11-09's events still arrive).
    assert instance.get_dynamic_partitions(FEATURE_DATES) == []
    summary = backfill_features(defs, instance, today=dt.date(2026, 11, 9))
    assert summary == {"partitions": ["2026-11-08", "2026-11-09"], "failed": [],
                       "not_complete_yet": [DAY], "downstream": ["analytics_db", "feature_consumer"],
                       "analytics_republished": True, "success": True}
    # the partitions are exactly the dates it ran: none shows as missing
    assert instance.get_dynamic_partitions(FEATURE_DATES) == ["2026-11-08", "2026-11-09"]
    assert instance.get_materialized_partitions(dg.AssetKey("user_features")) == {"2026-11-08", "2026-11-09"}
    assert seen == [1]  # creator 7, as of 11-09
    con = connect_analytics(tmp_path / "analytics.duckdb")  # features.* name the lake relative to its folder
    try:
        # the copy's views may name the lake relative to the file's folder (how its readers open it)
        con.execute(f"SET file_search_path = '{tmp_path}'")
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
        assert node.partitions_def == dg.DynamicPartitionsDefinition(name=FEATURE_DATES)
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
    assert defs.resolve_sensor_def("feature_dates_sensor").default_status == dg.DefaultSensorStatus.RUNNING


def _lake_with_events(tmp_path, days: list[str]) -> PlatformStorage:
    lake = tmp_path / "lake"
    for i, day in enumerate(days):
        write_events(lake, "views", [view(as_of_ms(day) + H, 1, 100, 7, 10_000, 20_000)], f"v{i}")
    return PlatformStorage(data_dir=str(tmp_path))


def _tick(storage, instance, at: dt.datetime):
    defs = dg.Definitions(assets=feature_assets, jobs=[features_daily], schedules=[features_daily_schedule],
                          resources={"storage": storage})
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at, resources={"storage": storage},
                                        repository_def=defs.get_repository_def())
    return features_daily_schedule.evaluate_tick(context)


def test_schedule_targets_the_newest_complete_date_of_the_lake(tmp_path, instance):
    storage = PlatformStorage(data_dir=str(tmp_path))
    at = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.timezone.utc)
    empty = _tick(storage, instance, at)
    assert not empty.run_requests and "no events in the lake" in empty.skip_message

    storage = _lake_with_events(tmp_path, ["2026-11-06", "2026-11-07", "2026-11-08"])
    # Data that ended on 11-08, evaluated on 11-20: the features as of 11-09 00:00 (every event
    # in), not those of 11-20, which no event informs.
    (request,) = _tick(storage, instance, at).run_requests
    assert request.partition_key == "2026-11-09"
    assert instance.get_dynamic_partitions(FEATURE_DATES) == ["2026-11-06", "2026-11-07", "2026-11-08", "2026-11-09"]
    # the same tick again asks with the same run key (the daemon runs it once); new data, a new key
    assert _tick(storage, instance, at).run_requests[0].run_key == request.run_key
    write_events(tmp_path / "lake", "views", [view(as_of_ms("2026-11-08") + 2 * H, 2, 100, 7, 1, 2)], "late")
    assert _tick(storage, instance, at).run_requests[0].run_key != request.run_key

    # Live data (events of today already): at 02:00 on 11-07 the features as of 11-07 00:00,
    # not 11-08/11-09 (not complete yet), and those dates are not partitions yet either.
    instance.delete_dynamic_partition(FEATURE_DATES, "2026-11-08")
    instance.delete_dynamic_partition(FEATURE_DATES, "2026-11-09")
    (request,) = _tick(storage, instance, dt.datetime(2026, 11, 7, 2, 0, tzinfo=dt.timezone.utc)).run_requests
    assert request.partition_key == "2026-11-07"
    assert instance.get_dynamic_partitions(FEATURE_DATES) == ["2026-11-06", "2026-11-07"]


def test_dates_sensor_adds_the_dates_the_lake_informs(tmp_path, instance):
    def tick(storage):
        return feature_dates_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources={"storage": storage}))

    result = tick(PlatformStorage(data_dir=str(tmp_path)))
    assert not result.dynamic_partitions_requests and "no events" in result.skip_message
    storage = _lake_with_events(tmp_path, ["2026-11-06", "2026-11-08"])
    (add,) = tick(storage).dynamic_partitions_requests
    # through the day after the last event date; the gap day 11-07 too (its features exist)
    assert add.partitions_def_name == FEATURE_DATES
    assert list(add.partition_keys) == ["2026-11-06", "2026-11-07", "2026-11-08", "2026-11-09"]
    instance.add_dynamic_partitions(FEATURE_DATES, list(add.partition_keys))  # what the daemon does with it
    again = tick(storage)
    assert not again.dynamic_partitions_requests and "2026-11-06 .. 2026-11-09" in again.skip_message
    # a newly ingested day adds its date and the next
    write_events(tmp_path / "lake", "views", [view(as_of_ms("2026-11-09") + H, 1, 100, 7, 1, 2)], "new")
    (add,) = tick(storage).dynamic_partitions_requests
    assert list(add.partition_keys) == ["2026-11-10"]


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
    con = connect_analytics(data / "analytics.duckdb")  # features.* name the lake relative to its folder
    try:
        con.execute(f"SET file_search_path = '{data}'")  # views may name the lake relative to the file
        by_date = dict(con.sql("SELECT feature_date::VARCHAR, count(*) FROM features.video_daily GROUP BY 1").fetchall())
        assert set(by_date) == {"2026-11-02", "2026-11-03"} and by_date["2026-11-03"] > 100
        n = con.sql("SELECT count(*) FROM features.user_daily WHERE feature_date = '2026-11-03' "
                    "AND abs(list_sum(hour_share_28d) - 1) < 1e-9").fetchall()[0][0]
        assert n > 100
    finally:
        con.close()
