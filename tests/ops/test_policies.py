"""Freshness, retry and automation policies sit on the assets docs/operations.md names, with the
documented windows; the windows follow the environment; the code location still loads."""

import json
import os
import subprocess
import sys
from datetime import timedelta

import dagster as dg
import pytest

from tiktok_pipelines.definitions import defs as load_defs
from tiktok_pipelines.defs.ops.policies import ONLINE_MODEL_LAG, TRAINING_RETRY, TRANSIENT_RETRY

RETRIED = {"warehouse_lake_tables", "analytics_db", "video_tags", "raw_views", "dim_videos", "online_ranker",
           "user_features", "staging/views", "seeds/revenue_shares", "marts/creator_daily",
           "marts/attribution_credits"}


@pytest.fixture(scope="module")
def defs():
    return load_defs()


@pytest.fixture(scope="module")
def graph(defs):
    return defs.resolve_asset_graph()


def _windows(policy) -> tuple[timedelta, timedelta]:
    return policy.warn_window.to_timedelta(), policy.fail_window.to_timedelta()


def test_freshness_on_what_analysts_and_the_server_read(graph):
    fresh = {k.to_user_string(): graph.get(k).freshness_policy for k in graph.get_all_asset_keys()
             if graph.get(k).freshness_policy is not None}
    marts = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).group_name == "marts"}
    assert len(marts) >= 8
    # online_ranker has none: a time window since its last update warned on an idle instance. Its
    # check follows_events measures its lag behind the events instead (tests/dagster/test_training_assets.py).
    assert set(fresh) == marts | {"analytics_db", "batch_rankers"}
    hourly = (timedelta(hours=2), timedelta(hours=3))  # one missed hourly run warns, two fail
    assert {name: _windows(p) for name, p in fresh.items() if name in marts | {"analytics_db"}} == \
        dict.fromkeys(marts | {"analytics_db"}, hourly)
    assert _windows(fresh["batch_rankers"]) == (timedelta(hours=26), timedelta(hours=30))
    assert (ONLINE_MODEL_LAG.warn, ONLINE_MODEL_LAG.fail) == (timedelta(minutes=15), timedelta(hours=1))
    checks = {k.name for k in graph.asset_check_keys if k.asset_key == dg.AssetKey("online_ranker")}
    assert checks == {"follows_events"}


def test_windows_come_from_the_environment():
    env = {**os.environ, "TIKTOK_FRESHNESS_ONLINE_WARN_MIN": "5", "TIKTOK_FRESHNESS_ONLINE_FAIL_MIN": "20",
           "TIKTOK_RETRY_MAX": "2"}
    code = ("import json; from tiktok_pipelines.defs.ops import policies as p; "
            "print(json.dumps([p.ONLINE_MODEL_LAG.warn.total_seconds(), "
            "p.ONLINE_MODEL_LAG.fail.total_seconds(), p.TRANSIENT_RETRY.max_retries]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [300, 1200, 2]
    bad = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                         env={**env, "TIKTOK_FRESHNESS_ONLINE_WARN_MIN": "30"})
    assert bad.returncode != 0 and "must be below" in bad.stderr  # warn >= fail is refused at load


def test_retry_policies_with_backoff_and_a_bound(defs, graph):
    assert TRANSIENT_RETRY.max_retries == 3 and TRANSIENT_RETRY.backoff == dg.Backoff.EXPONENTIAL
    assert TRANSIENT_RETRY.jitter == dg.Jitter.PLUS_MINUS and TRANSIENT_RETRY.delay > 0
    assert TRAINING_RETRY.max_retries == 1
    for name in RETRIED:
        op = defs.resolve_assets_def(dg.AssetKey.from_user_string(name)).op
        assert op.retry_policy == TRANSIENT_RETRY, name
    assert defs.resolve_assets_def(dg.AssetKey("batch_rankers")).op.retry_policy == TRAINING_RETRY
    # Every warehouse writer (the duckdb_warehouse pool) retries a lock; nothing retries without bound.
    ops = {}
    for key in graph.get_all_asset_keys():
        if not graph.get(key).is_materializable:
            continue
        a = defs.resolve_assets_def(key)
        ops[a.op.name] = (a.op.retry_policy, graph.get(key).pools)
    for name, (policy, pools) in ops.items():
        if "duckdb_warehouse" in (pools or ()):
            assert policy is not None, name
        assert policy is None or policy.max_retries <= 3, name
    # the experiments are research runs: a failure there is looked at, not retried
    assert ops["monolith_experiments"][0] is None


def test_automation_condition_and_its_sensor(defs, graph):
    conditioned = {k.to_user_string(): graph.get(k).automation_condition for k in graph.get_all_asset_keys()
                   if graph.get(k).automation_condition is not None}
    assert set(conditioned) == {"video_tags"}
    assert conditioned["video_tags"].get_label() == "eager"
    sensor = defs.resolve_sensor_def("automation_sensor")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    # declared, so Dagster adds no implicit default_automation_condition_sensor beside it
    assert sorted(s.name for s in defs.get_repository_def().sensor_defs) == [
        "automation_sensor", "feature_dates_sensor", "landing_sensor", "online_freshness_sensor",
        "online_update_sensor", "run_failure_alert_sensor"]


def test_eager_retags_after_the_catalog_changes(defs):
    """Evaluate video_tags' condition the way the daemon does: nothing on an empty instance, a
    request once dim_videos has a new materialization, none once video_tags ran after it."""
    with dg.instance_for_test() as instance:
        state: dict = {}

        def requested() -> int:
            result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=state.get("cursor"))
            state["cursor"] = result.cursor
            return result.get_num_requested(dg.AssetKey("video_tags"))

        assert requested() == 0
        instance.report_runless_asset_event(dg.AssetMaterialization("dim_videos"))
        assert requested() == 1
        instance.report_runless_asset_event(dg.AssetMaterialization("video_tags"))
        assert requested() == 0
        # a catalog reloaded later: re-tagged again
        instance.report_runless_asset_event(dg.AssetMaterialization("dim_videos"))
        assert requested() == 1


def test_the_code_location_loads(defs):
    defs.get_repository_def().load_all_definitions()
    for job in ("build_all", "hourly_analytics_job", "daily_training_job", "features_daily", "ingest_job",
                "online_update_job", "experiments_job"):
        defs.resolve_job_def(job)
