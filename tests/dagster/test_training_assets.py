"""training_examples through a real Dagster instance: materialized after ingestion, idempotent."""

from __future__ import annotations

import dagster as dg

from tests.dagster.conftest import resources_for
from tests.ingest.conftest import dumps, write_landing
from tests.training.test_joiner import SCENARIO
from tiktok_pipelines.defs.ingest.assets import ingest_landing
from tiktok_pipelines.defs.resources import JoinerPolicy
from tiktok_pipelines.defs.training.assets import training_examples
from tiktok_pipelines.ingest.engine import Lake


def _table(value) -> list[dict]:
    return [dict(r.data) for r in value.records]


def test_training_examples_materialize_and_rebuild_only_what_changed(tmp_path, instance) -> None:
    for stream, rows in SCENARIO.items():
        write_landing(tmp_path / "landing", stream, [dumps(r) for r in rows])
    resources = {**resources_for(tmp_path), "joiner_policy": JoinerPolicy(negative_rate=1.0)}
    result = dg.materialize([ingest_landing, training_examples], resources=resources, instance=instance)
    assert result.success
    meta = result.asset_materializations_for_node("training_examples")[0].metadata
    assert meta["dagster/row_count"].value == len(SCENARIO["impressions"])
    # tables a person reads, not JSON blobs
    assert _table(meta["dates_built"].value) == [{"date": "2026-11-02", "examples": 6}]
    # what it read: the committed version of each events table (time travel reproduces the read)
    store = Lake(tmp_path / "lake").store
    assert _table(meta["lake_versions"].value) == [
        {"table": f"events/{s}", "version": store.version(f"events/{s}")} for s in ("impressions", "interactions", "views")]
    # the column table, from the Delta table's schema
    columns = {c.name: c.type for c in meta["dagster/column_schema"].schema.columns}
    assert columns["engaged"] == "bool" and columns["ts_ms"] == "int64" and columns["sample_rate"] == "double"
    assert {"example_id", "user_id", "video_id", "event_date", "user_views_24h", "watch_ratio"} <= set(columns)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()
              if c.asset_key == dg.AssetKey("training_examples")}
    assert set(checks) == {"labels_valid", "keys_present_and_unique", "point_in_time", "not_empty"}
    assert all(c.passed for c in checks.values()), {n: c.description for n, c in checks.items()}
    assert checks["labels_valid"].metadata["rows"].value == 6

    again = dg.materialize([training_examples], resources=resources, instance=instance)
    meta = again.asset_materializations_for_node("training_examples")[0].metadata
    assert _table(meta["dates_built"].value) == [] and meta["dates_unchanged"].value == 1
    assert meta["dagster/row_count"].value == 6


def test_training_examples_checks_fail_on_bad_rows(tmp_path, instance) -> None:
    """The checks read the committed table: rows that break them (a NULL label, a duplicated id, an
    example filed under another date, a video served before it was published) fail them."""
    import pyarrow as pa

    from tiktok_pipelines.training.joiner import EXAMPLES_TABLE

    for stream, rows in SCENARIO.items():
        write_landing(tmp_path / "landing", stream, [dumps(r) for r in rows])
    resources = {**resources_for(tmp_path), "joiner_policy": JoinerPolicy(negative_rate=1.0)}
    assert dg.materialize([ingest_landing, training_examples], resources=resources, instance=instance).success
    store = Lake(tmp_path / "lake").store
    good = store.dataset(EXAMPLES_TABLE).to_table()
    bad = good.slice(0, 1)
    bad = bad.set_column(bad.schema.get_field_index("engaged"), "engaged", pa.array([None], pa.bool_()))
    bad = bad.set_column(bad.schema.get_field_index("video_age_h"), "video_age_h", pa.array([-1.0]))
    bad = bad.set_column(bad.schema.get_field_index("ts_ms"), "ts_ms", pa.array([bad["ts_ms"][0].as_py() + 86_400_000]))
    store.commit(EXAMPLES_TABLE, bad.cast(good.schema), txn="tests:bad-row", partition_by=["event_date"])
    # the evaluation as a check reads it: the asset's own checks run with its next materialization
    result = dg.materialize([training_examples], resources=resources, instance=instance, raise_on_error=False)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()
              if c.asset_key == dg.AssetKey("training_examples")}
    assert not checks["labels_valid"].passed and checks["labels_valid"].metadata["null_labels"].value == 1
    assert not checks["keys_present_and_unique"].passed
    assert checks["keys_present_and_unique"].metadata["duplicate_ids"].value == 1
    assert not checks["point_in_time"].passed
    assert checks["point_in_time"].metadata["misdated"].value == 1
    assert checks["point_in_time"].metadata["video_after_impression"].value == 1
    assert checks["not_empty"].passed


def test_batch_retrain_registers_evaluates_promotes_and_publishes(tmp_path, instance) -> None:
    """Three simulated days: train on two, evaluate on the third; then again, where the new
    models meet the champions on the same day."""
    from tiktok_pipelines.defs.resources import TrainingPolicy
    from tiktok_pipelines.defs.training.assets import batch_rankers
    from tiktok_pipelines.serving.store import load_latest
    from tiktok_pipelines.simulator import simulate
    from tiktok_pipelines.training.registry import ModelRegistry

    simulate(tmp_path, seed=3, users=400, videos=800, days=3, events_per_day=40_000,
             start_date="2026-11-01", kuairec_dir=None, write_truth=False)
    resources = {**resources_for(tmp_path), "training_policy": TrainingPolicy(lgbm_rounds=40, torch_dim=8)}
    assets = [ingest_landing, training_examples, batch_rankers]
    result = dg.materialize(assets, resources=resources, instance=instance)
    assert result.success
    meta = result.asset_materializations_for_node("batch_rankers")[0].metadata
    assert meta["eval_day"].value == "2026-11-03"
    for name in ("lgbm_ranker", "torch_ranker"):
        # the simulator's reactions follow latent interests: a model that learned nothing scores 0.5
        assert meta[f"{name}/auc"].value > 0.55, (name, meta[f"{name}/auc"].value)
        assert meta[f"{name}/promoted"].value is True and meta[f"{name}/version"].value == 1
    registry = ModelRegistry(tmp_path / "models")
    card = registry.card("torch_ranker", 1)
    assert card["train_window"] == ["2026-11-01", "2026-11-02"] and card["metrics"]["examples"] > 1000
    # The card pins the events tables' Delta versions each example date was joined from.
    from deltalake import DeltaTable

    assert sorted(card["lake_versions"]) == ["2026-11-01", "2026-11-02", "2026-11-03"]
    newest = DeltaTable(str(tmp_path / "lake" / "events" / "impressions")).version()
    assert {v["events/impressions"] for v in card["lake_versions"].values()} == {newest}
    # the new torch champion is what the serving directory now holds
    state = load_latest(tmp_path / "serving")
    assert state.seq == meta["serving_seq"].value and state.metadata["version"] == 1
    slots = {"user_id", "video_id", "creator_id"}
    assert set(state.tables) == slots | {f"{s}_bias" for s in slots} and len(state.tables["user_id"]) > 100
    assert len(state.tables["video_id_bias"]) == len(state.tables["video_id"])  # first-order term per id

    again = dg.materialize([batch_rankers], resources=resources, instance=instance)
    meta2 = again.asset_materializations_for_node("batch_rankers")[0].metadata
    for name in ("lgbm_ranker", "torch_ranker"):
        assert meta2[f"{name}/version"].value == 2
        # the champion was scored on the same day; same data and seeds give the same LightGBM
        assert f"{name}/champion_auc_same_day" in meta2
    assert meta2["lgbm_ranker/champion_auc_same_day"].value == meta2["lgbm_ranker/auc"].value
    assert registry.champion("lgbm_ranker")["version"] == 2  # equal AUC is within the margin


def test_batch_retrain_skips_with_one_day(tmp_path, instance) -> None:
    from tiktok_pipelines.defs.training.assets import batch_rankers

    for stream, rows in SCENARIO.items():
        write_landing(tmp_path / "landing", stream, [dumps(r) for r in rows])
    result = dg.materialize([ingest_landing, training_examples, batch_rankers],
                            resources=resources_for(tmp_path), instance=instance)
    assert result.success
    assert not result.asset_materializations_for_node("batch_rankers")


def test_online_sensor_requests_one_run_per_new_commit_and_the_run_publishes(tmp_path, instance) -> None:
    """New versions of the lake's ingest_log Delta table drive the online sensor; its run trains
    and publishes a delta on top of the batch model's full version."""
    from tiktok_pipelines.defs.resources import TrainingPolicy
    from tiktok_pipelines.defs.training.assets import batch_rankers, online_ranker, online_update_job
    from tiktok_pipelines.defs.training.sensors import online_update_sensor
    from tiktok_pipelines.ingest.engine import ingest_files
    from tiktok_pipelines.ingest.landing import list_landing_files
    from tiktok_pipelines.serving.store import load_latest
    from tiktok_pipelines.simulator import simulate

    simulate(tmp_path, seed=4, users=300, videos=600, days=4, events_per_day=30_000,
             start_date="2026-11-01", kuairec_dir=None, write_truth=False)
    landing, lake = tmp_path / "landing", tmp_path / "lake"

    def ingest(days):
        files = [f for f in list_landing_files(landing) if any(f"/dt={d}/" in f.rel_path for d in days)]
        ingest_files(files, landing_root=landing, lake_root=lake)

    resources = {**resources_for(tmp_path), "training_policy": TrainingPolicy(lgbm_rounds=20, torch_dim=8)}
    defs = dg.Definitions(assets=[training_examples, batch_rankers, online_ranker], jobs=[online_update_job],
                          sensors=[online_update_sensor], resources=resources)

    def tick(cursor):
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources)
        r = online_update_sensor.evaluate_tick(ctx)
        return r.run_requests or [], r.cursor, r.skip_message

    requests, cursor, skip = tick(None)
    assert not requests and "no ingested batch" in skip
    ingest(["2026-11-01", "2026-11-02", "2026-11-03"])
    assert dg.materialize([training_examples, batch_rankers], resources=resources, instance=instance).success
    full_seq = load_latest(tmp_path / "serving").seq

    requests, cursor, _ = tick(None)
    assert len(requests) == 1
    requests, cursor2, skip = tick(cursor)
    assert not requests and "no batch committed" in skip and cursor2 == cursor

    day4 = sorted((f for f in list_landing_files(landing) if "/dt=2026-11-04/" in f.rel_path),
                  key=lambda f: f.flushed_at_ms)
    def newest():
        t = Lake(lake).store.table("ingest_log")
        return f"online-ingest_log-{t.metadata().id}-v{t.version()}"

    ingest_files(day4[: len(day4) // 2], landing_root=landing, lake_root=lake)  # a new ingest_log version
    requests, cursor, _ = tick(cursor)
    assert len(requests) == 1 and requests[0].run_key == newest()

    # While an update waits in the run queue, new commits request no other: the waiting one will
    # train them too when it starts. The cursor stays, so a tick after it has started asks again.
    # (A run created and not yet started; a QUEUED one needs a code location to come from.)
    queued = instance.create_run_for_job(defs.resolve_job_def("online_update_job"),
                                         status=dg.DagsterRunStatus.NOT_STARTED)
    ingest_files(day4[len(day4) // 2 :], landing_root=landing, lake_root=lake)
    requests, held, skip = tick(cursor)
    assert not requests and "already waiting" in skip and held == cursor
    instance.report_run_canceled(queued)
    requests, cursor, _ = tick(cursor)
    assert len(requests) == 1 and requests[0].run_key == newest()
    # A file dropped into the table's folder but never committed is no new batch.
    (lake / "ingest_log" / "part-00000-stray.parquet").write_bytes(b"not committed")
    requests, _, skip = tick(cursor)
    assert not requests and "no batch committed" in skip

    result = defs.resolve_job_def("online_update_job").execute_in_process(instance=instance)
    assert result.success
    meta = result.asset_materializations_for_node("online_ranker")[0].metadata
    assert meta["base_seq"].value == full_seq and meta["serving_seq"].value == full_seq + 1
    assert meta["examples"].value > 1000 and meta["rows_published"].value > 0
    state = load_latest(tmp_path / "serving")
    assert state.seq == full_seq + 1 and state.metadata["trained_through_ms"] > 0


def test_follows_events_is_quiet_when_idle_and_fails_when_the_model_does_not_follow(tmp_path, instance) -> None:
    """online_ranker's follows_events check, through its sensor, on a real instance and lake:
    FAIL while ingested events wait for the online update (with an alert line), PASS once it ran,
    nothing to do while no event arrives (however long), FAIL again when events arrive and no
    update follows."""
    import datetime as dt
    import json

    from tiktok_pipelines.defs.resources import TrainingPolicy
    from tiktok_pipelines.defs.training.assets import (
        FOLLOWS_EVENTS,
        batch_rankers,
        online_ranker,
        online_ranker_follows_events,
        online_update_job,
    )
    from tiktok_pipelines.defs.training.sensors import online_freshness_sensor
    from tiktok_pipelines.ingest.engine import ingest_files
    from tiktok_pipelines.ingest.landing import list_landing_files
    from tiktok_pipelines.simulator import simulate

    simulate(tmp_path, seed=4, users=300, videos=600, days=4, events_per_day=20_000,
             start_date="2026-11-01", kuairec_dir=None, write_truth=False)
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    files = sorted(list_landing_files(landing), key=lambda f: f.flushed_at_ms)
    resources = {**resources_for(tmp_path), "training_policy": TrainingPolicy(lgbm_rounds=20, torch_dim=8)}
    defs = dg.Definitions(assets=[training_examples, batch_rankers, online_ranker], jobs=[online_update_job],
                          asset_checks=[online_ranker_follows_events], sensors=[online_freshness_sensor],
                          resources=resources)
    check_key = dg.AssetCheckKey(online_ranker.key, FOLLOWS_EVENTS)
    state = {"cursor": None}

    def tick():
        ctx = dg.build_sensor_context(instance=instance, cursor=state["cursor"], definitions=defs,
                                      resources=defs.resources)
        r = online_freshness_sensor.evaluate_tick(ctx)
        state["cursor"] = r.cursor or state["cursor"]
        for event in r.asset_events:  # what the daemon does with them
            instance.report_runless_asset_event(event)
        return r

    def latest():
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([check_key])[check_key]
        return record.event.asset_check_evaluation

    def alerts():
        path = tmp_path / "alerts" / "alerts.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []

    first = tick()
    assert first.asset_events[0].passed and "no event ingested" in first.asset_events[0].description
    # through 11-04 00:00 by flush time (a file's dt= folder is its flush date: 11-05's holds 11-04's last hour)
    cut = int(dt.datetime(2026, 11, 4, tzinfo=dt.timezone.utc).timestamp() * 1000)
    ingest_files([f for f in files if f.flushed_at_ms <= cut], landing_root=landing, lake_root=lake)
    assert dg.materialize([training_examples, batch_rankers], resources=resources, instance=instance).success
    # The batch model is trained through day 2; day 3 has arrived and no online update ran: FAIL.
    (stale,) = tick().asset_events
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.ERROR
    assert stale.metadata["lag_minutes"].value > 60
    assert latest().passed is False
    (alert,) = alerts()
    assert alert["check"] == f"online_ranker:{FOLLOWS_EVENTS}" and "trails the arrived events" in alert["error"]

    assert defs.resolve_job_def("online_update_job").execute_in_process(instance=instance).success
    (caught_up,) = tick().asset_events
    assert caught_up.passed, caught_up.description
    assert caught_up.metadata["lag_minutes"].value <= 15
    assert latest().passed is True
    # Idle: no new batch, no new model. Nothing is read, nothing recorded, still green.
    idle = tick()
    assert not idle.asset_events and "no new batch or model version" in idle.skip_message
    assert latest().passed is True and len(alerts()) == 1
    # The daily retrain publishes a full version trained through an earlier day: no lag of the
    # online path (its next update continues from there), so still green, no event recorded.
    from tiktok_pipelines.serving.store import list_versions

    before = list_versions(tmp_path / "serving")[-1]
    assert dg.materialize([batch_rankers], resources=resources, instance=instance).success
    retrained = tick()
    assert not retrained.asset_events and latest().passed is True
    assert list_versions(tmp_path / "serving")[-1] == before or "still pass" in retrained.skip_message

    # Events arrive (half a day) and the online update does not follow: FAIL again, one more alert.
    later = [f for f in files if f.flushed_at_ms > cut]
    ingest_files(later[: len(later) // 2], landing_root=landing, lake_root=lake)
    (behind,) = tick().asset_events
    assert not behind.passed and behind.metadata["lag_minutes"].value > 60
    assert latest().passed is False and len(alerts()) == 2
    # the same verdict on demand, as the UI's "Execute" runs it
    result = dg.materialize([online_ranker, online_ranker_follows_events], resources=resources, instance=instance,
                            selection=dg.AssetSelection.checks(online_ranker_follows_events))
    (on_demand,) = result.get_asset_check_evaluations()
    assert not on_demand.passed and on_demand.severity == dg.AssetCheckSeverity.ERROR
