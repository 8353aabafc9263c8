"""The online path with the lake in a bucket: ``online_ranker`` materialises with
``PlatformStorage.lake_uri = s3://…`` (moto's server on 127.0.0.1) on a real Dagster instance. The
streaming join reads the events there and keeps its state, its examples and the online counters
beside them; the serving directory (local, or in a bucket with ``serving_uri``) gets the delta it
trained."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from tests.s3 import lake_storage_options, new_bucket
from tests.training.batch_model import publish_batch_model
from tiktok_pipelines.defs.resources import IngestPolicy, JoinerPolicy, PlatformStorage, TrainingPolicy
from tiktok_pipelines.defs.training.assets import online_ranker
from tiktok_pipelines.features.online import CountersSource
from tiktok_pipelines.ingest.engine import ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.serving.store import list_versions, load_latest, read_version_manifest
from tiktok_pipelines.simulator import simulate
from tiktok_pipelines.training.stream_join import committed_seq, read_stream_examples, stream_examples_after


@pytest.mark.parametrize("serving_in_bucket", [False, True], ids=["serving-local", "serving-in-bucket"])
def test_online_ranker_materialises_with_the_lake_in_a_bucket(tmp_path, instance, s3_endpoint, s3_env,
                                                               monkeypatch, serving_in_bucket):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("TIKTOK_SERVING_CACHE", str(tmp_path / "serving-cache"))
    uri = f"s3://{new_bucket(s3_endpoint)}/lake"
    data = tmp_path / "data"
    simulate(data, seed=4, users=200, videos=400, days=2, events_per_day=6_000, start_date="2026-11-01",
             kuairec_dir=None, write_truth=False)
    landing = data / "landing"
    files = list_landing_files(landing)
    joiner_policy = JoinerPolicy(negative_rate=0.5)
    storage = PlatformStorage(data_dir=str(data), lake_uri=uri,
                              serving_uri=f"s3://{new_bucket(s3_endpoint)}/serving" if serving_in_bucket else None)
    serving = storage.serving_location
    # Day 1 in the bucket and trained as the daily retrain would; day 2 ingested, not yet trained.
    ingest_files([f for f in files if "/dt=2026-11-01/" in f.rel_path], landing_root=landing, lake_root=uri)
    _, through = publish_batch_model(uri, serving, joiner_policy.config())
    ingest_files([f for f in files if "/dt=2026-11-02/" in f.rel_path], landing_root=landing, lake_root=uri)

    resources = {"storage": storage, "joiner_policy": joiner_policy, "training_policy": TrainingPolicy(),
                 "ingest_policy": IngestPolicy()}
    result = dg.materialize([online_ranker], resources=resources, instance=instance)
    assert result.success
    (mat,) = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["serving_seq"] == 2 and meta["base_seq"] == 1 and meta["examples"] > 0
    assert list_versions(serving) == [1, 2]
    manifest = read_version_manifest(serving, 2)
    assert manifest["metadata"]["stream_seq"] == meta["stream/step"] == committed_seq(uri) == 1

    # It trained on exactly what the join emitted after the batch model, read back from the bucket
    trained = stream_examples_after(uri, through)
    assert trained.num_rows == meta["examples"] == len(set(trained.column("example_id").to_pylist()))
    # an engine that knows only Delta reads the same table: the step's examples (day 1's too: the
    # join's first step read both days), of which those after the batch model were trained
    outside = pl.scan_delta(f"{uri}/stream_examples", storage_options=lake_storage_options(uri)).collect()
    assert outside.height == read_stream_examples(uri).num_rows > trained.num_rows
    assert set(trained.column("example_id").to_pylist()) <= set(outside["example_id"].to_list())
    assert outside["seq"].unique().to_list() == [1]
    counters = CountersSource(uri).poll()
    assert counters is not None and counters.as_of_ms is not None and counters.values
    # nothing of the lake on local disk: the events, the join's state and outputs are in the bucket
    assert not (data / "lake").exists()

    # Nothing new has landed: the next run publishes nothing and joins nothing twice.
    again = dg.materialize([online_ranker], resources=resources, instance=instance)
    assert again.success and not again.get_asset_materialization_events()
    assert list_versions(serving) == [1, 2] and committed_seq(uri) == 1
    # what a model server (or the next update) loads: the delta on the full version, from either place
    state = load_latest(serving)
    assert state is not None and state.seq == 2
    # the serving folder on local disk is untouched when the versions live in the bucket (the
    # trainer's checkpoint stays local, beside it)
    assert (storage.serving.exists() and list_versions(storage.serving) == [1, 2]) != serving_in_bucket
