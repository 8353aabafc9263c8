"""The Dagster side of a lake on object storage: ``PlatformStorage.lake_uri = s3://…`` (a real S3
endpoint on 127.0.0.1, moto's server) through the ingest, its checks, the warehouse refresh, the
catalog's dims, the features, the content tags and the table care assets, on a real Dagster
instance."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import polars as pl

from tests.dagster.conftest import ALL_ASSETS, write_minimal_catalog
from tests.ingest.conftest import dumps, valid_record, write_landing
from tests.s3 import lake_storage_options
from tiktok_pipelines.defs.lake.assets import lake_compaction, lake_report, lake_vacuum
from tiktok_pipelines.defs.resources import IngestPolicy, JoinerPolicy, PlatformStorage, TrainingPolicy
from tiktok_pipelines.schemas import STREAMS

VIEWS = STREAMS["views"]


def test_ingest_warehouse_and_care_with_the_lake_on_s3(tmp_path, instance, s3_endpoint, s3_env, monkeypatch):
    from tests.s3 import new_bucket

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    uri = f"s3://{new_bucket(s3_endpoint)}/lake"
    data = tmp_path / "data"
    write_minimal_catalog(data / "catalog")
    write_landing(data / "landing", "views", [dumps(valid_record(VIEWS, i)) for i in range(30)] + ["{bad"], seq=1)
    resources = {"storage": PlatformStorage(data_dir=str(data), lake_uri=uri), "ingest_policy": IngestPolicy(),
                 "joiner_policy": JoinerPolicy(), "training_policy": TrainingPolicy()}

    result = dg.materialize([*ALL_ASSETS, lake_compaction, lake_vacuum, lake_report], resources=resources,
                            instance=instance)
    assert result.success
    checks = {(c.asset_key.path[-1], c.check_name): c.passed for c in result.get_asset_check_evaluations()}
    assert checks[("ingest_log", "accounting_balanced")] and checks[("raw_views", "event_id_unique")]
    mats = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    meta = {m.asset_key.path[-1]: m.metadata for m in mats}
    assert meta["raw_views"]["dagster/row_count"].value == 30
    assert meta["raw_views"]["path"].value == f"{uri}/events/views"
    assert meta["quarantine"]["dagster/row_count"].value == 1
    # Nothing of the lake is on local disk; an outside engine reads it from the bucket.
    assert not (data / "lake" / "events").exists()
    assert pl.scan_delta(f"{uri}/events/views", storage_options=lake_storage_options(uri)).select(
        pl.len()).collect().item() == 30
    # The warehouse loaded the committed versions and says which.
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.views").fetchall()[0][0] == 30
        versions = dict(con.execute("SELECT table_name, version FROM raw._lake_versions").fetchall())
    assert versions["events/views"] == 1  # 0: the empty create, 1: the batch
    assert "events/views" in meta["lake_report"]["report"].value
    # The online sensor watches the ingest log where the ingest commits it: in the bucket (it
    # once read the empty local folder, so an S3 lake never triggered an online update).
    from tiktok_pipelines.defs.training.assets import online_update_job
    from tiktok_pipelines.defs.training.sensors import online_update_sensor

    defs = dg.Definitions(jobs=[online_update_job], sensors=[online_update_sensor], resources=resources)
    tick = online_update_sensor.evaluate_tick(dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources))
    assert len(tick.run_requests or []) == 1, tick.skip_message


def test_dims_features_and_tags_are_delta_tables_in_the_bucket(tmp_path, instance, s3_endpoint, s3_env,
                                                               monkeypatch):
    """With lake_uri set, dim_* publish the catalog as Delta tables in the bucket, the warehouse
    loads dims.* from them, the *_features assets read the events and dims/videos there and write
    features/<entity> beside them (the warehouse's features.* loaded from those), and video_tags
    writes content/video_tags there: nothing of the lake on local disk, and the values are those
    of the local lake (tests/features/test_assets.py)."""
    from tests.features.conftest import DAY, write_scenario
    from tests.s3 import new_bucket
    from tiktok_pipelines.defs.catalog.assets import catalog_assets
    from tiktok_pipelines.defs.features.assets import feature_assets
    from tiktok_pipelines.defs.tagging.assets import video_tags
    from tiktok_pipelines.defs.warehouse.assets import warehouse_lake_tables

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    uri = f"s3://{new_bucket(s3_endpoint)}/lake"
    opts = lake_storage_options(uri)
    data = tmp_path / "data"
    write_minimal_catalog(data / "catalog")
    write_scenario(data, uri)  # the events into the bucket; catalog/videos.parquet: 4 videos
    resources = {"storage": PlatformStorage(data_dir=str(data), lake_uri=uri)}

    result = dg.materialize([*catalog_assets, warehouse_lake_tables, video_tags], resources=resources,
                            instance=instance)
    assert result.success
    meta = {m.asset_key.path[-1]: m.metadata for m in
            (e.event_specific_data.materialization for e in result.get_asset_materialization_events())}
    assert meta["dim_videos"]["path"].value == f"{uri}/dims/videos"
    assert meta["video_tags"]["path"].value == f"{uri}/content/video_tags"
    assert pl.scan_delta(f"{uri}/dims/videos", storage_options=opts).select(pl.len()).collect().item() == 4
    assert pl.scan_delta(f"{uri}/dims/users", storage_options=opts).select(pl.len()).collect().item() == 3
    tags = pl.scan_delta(f"{uri}/content/video_tags", storage_options=opts).collect()
    assert sorted(tags["video_id"].to_list()) == [100, 101, 102, 200]

    instance.add_dynamic_partitions("feature_dates", [DAY])  # the features' partitions come from the data
    features = dg.materialize(feature_assets, partition_key=DAY, resources=resources, instance=instance)
    assert features.success
    fmeta = {m.asset_key.path[-1]: m.metadata for m in
             (e.event_specific_data.materialization for e in features.get_asset_materialization_events())}
    assert fmeta["user_features"]["dagster/row_count"].value == 10
    assert fmeta["video_features"]["dagster/row_count"].value == 5
    assert fmeta["creator_features"]["dagster/row_count"].value == 3
    assert fmeta["creator_features"]["path"].value == f"{uri}/features/creator"
    users = pl.scan_delta(f"{uri}/features/user", storage_options=opts).collect()
    assert users.height == 10 and users["feature_date"].unique().to_list() == [dt.date(2026, 11, 10)]
    assert not (data / "lake").exists()

    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM dims.videos").fetchall()[0][0] == 4
        assert con.execute("SELECT count(*) FROM content.video_tags").fetchall()[0][0] == 4
        # the categories came from dims/videos in the bucket (100: dance), as on local disk
        assert con.execute("SELECT category FROM features.video_daily WHERE video_id = 100").fetchall() == [("dance",)]
        assert con.execute("SELECT top_category_28d FROM features.user_daily WHERE user_id = 1").fetchall() == [("food",)]
        assert con.execute("SELECT feature_date::VARCHAR, followers FROM features.creator_daily "
                           "WHERE creator_id = 7").fetchall() == [(DAY, 3)]


def test_training_examples_are_a_delta_table_in_the_bucket(tmp_path, instance, s3_endpoint, s3_env, monkeypatch):
    """With lake_uri set, training_examples reads the events from the bucket and writes the
    examples (and their per-date versions) as Delta tables beside them; nothing on local disk."""
    from tests.s3 import new_bucket
    from tests.training.test_joiner import DAY, SCENARIO, ingest
    from tiktok_pipelines.defs.training.assets import training_examples
    from tiktok_pipelines.training.joiner import examples_lake_versions

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    uri = f"s3://{new_bucket(s3_endpoint)}/lake"
    landing = tmp_path / "landing"
    landing.mkdir()
    ingest(landing, uri, SCENARIO, seq=1)
    data = tmp_path / "data"
    resources = {"storage": PlatformStorage(data_dir=str(data), lake_uri=uri),
                 "joiner_policy": JoinerPolicy(negative_rate=1.0)}
    result = dg.materialize([training_examples], resources=resources, instance=instance)
    assert result.success
    meta = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    assert meta["dagster/row_count"].value == 6 and {
        r.data["date"]: r.data["examples"] for r in meta["dates_built"].value.records} == {DAY: 6}
    assert not (data / "lake").exists()
    assert pl.scan_delta(f"{uri}/examples", storage_options=lake_storage_options(uri)).select(
        pl.len()).collect().item() == 6
    assert set(examples_lake_versions(uri)) == {DAY}
    again = dg.materialize([training_examples], resources=resources, instance=instance)
    meta = again.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    assert meta["dates_unchanged"].value == 1 and meta["dagster/row_count"].value == 6


def test_ingest_to_a_published_serving_version_with_the_lake_on_s3(tmp_path, instance, s3_endpoint, s3_env,
                                                                    monkeypatch):
    """The loop with the lake in a bucket: landing -> ingest -> warehouse -> training examples ->
    the daily retrain -> a serving version the model server loads; the card pins the versions."""
    from tests.s3 import new_bucket
    from tiktok_pipelines.defs.training.assets import batch_rankers, training_examples
    from tiktok_pipelines.serving.store import load_latest
    from tiktok_pipelines.simulator import simulate
    from tiktok_pipelines.training.registry import ModelRegistry

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    uri = f"s3://{new_bucket(s3_endpoint)}/lake"
    data = tmp_path / "data"
    simulate(data, seed=4, users=200, videos=400, days=2, events_per_day=12_000, start_date="2026-11-01",
             kuairec_dir=None, write_truth=False)
    resources = {"storage": PlatformStorage(data_dir=str(data), lake_uri=uri), "ingest_policy": IngestPolicy(),
                 "joiner_policy": JoinerPolicy(),
                 "training_policy": TrainingPolicy(lgbm_rounds=10, torch_dim=4)}
    result = dg.materialize([*ALL_ASSETS, training_examples, batch_rankers], resources=resources,
                            instance=instance)
    assert result.success
    assert not (data / "lake" / "events").exists() and not (data / "lake" / "examples").exists()
    meta = result.asset_materializations_for_node("batch_rankers")[0].metadata
    state = load_latest(data / "serving")
    assert state is not None and state.seq == meta["serving_seq"].value and len(state.tables["video_id"]) > 0
    card = ModelRegistry(data / "models").card("torch_ranker", 1)
    assert sorted(card["lake_versions"]) == ["2026-11-01", "2026-11-02"]
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.impressions").fetchall()[0][0] > 1000
