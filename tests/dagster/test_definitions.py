"""The code location loads as `dagster dev` and `dg check defs` load it, grouped by domain."""

from __future__ import annotations

from collections import defaultdict

from dagster import AssetKey, AssetSelection

from tiktok_pipelines.definitions import defs as load_defs
from tiktok_pipelines.defs.warehouse.assets import WAREHOUSE_POOL
from tiktok_pipelines.schemas import CATALOG, STREAMS


def test_definitions_load_with_domains_jobs_and_sensor():
    defs = load_defs()
    graph = defs.resolve_asset_graph()
    groups = defaultdict(set)
    for key in graph.get_all_asset_keys():
        groups[graph.get(key).group_name].add(key.to_user_string())
    assert groups["ingest"] == {f"raw_{s}" for s in STREAMS} | {"quarantine", "ingest_log"}
    assert groups["catalog"] == {f"dim_{n}" for n in CATALOG}
    assert groups["warehouse"] == {"warehouse_lake_tables", "analytics_db"}
    assert groups["training"] == {"training_examples", "batch_rankers", "online_ranker"}
    assert groups["experiments"] == {"monolith_experiments"}
    assert groups["content"] == {"video_tags"}
    assert groups["features"] == {"user_features", "video_features", "creator_features"}
    assert {"marts/creator_daily", "marts/creator_revenue_daily", "marts/ad_performance_daily",
            "marts/audience_segments", "marts/attribution_credits", "marts/attribution_journeys"} <= groups["marts"]
    assert {"staging", "intermediate", "seeds"} <= set(groups)
    # the analysts' copy is taken after everything that writes the warehouse (its own edges come
    # from the writers nothing else reads: tests/dagster/test_analytics_portable.py)
    ancestors = {k.to_user_string() for k in AssetSelection.assets("analytics_db").upstream().resolve(graph)}
    assert groups["marts"] | groups["content"] | groups["staging"] <= ancestors
    assert {k.to_user_string() for k in graph.get(AssetKey("training_examples")).parent_keys} == {
        "raw_impressions", "raw_views", "raw_interactions"}
    assert {s.name for s in defs.sensors} == {"landing_sensor", "online_update_sensor", "feature_dates_sensor",
                                              "online_freshness_sensor",
                                              "run_failure_alert_sensor", "automation_sensor"}
    assert {"ingest_job", "build_all", "online_update_job", "daily_training_job", "experiments_job",
            "features_daily", "hourly_analytics_job"} <= {j.name for j in defs.jobs}
    schedules = {s.name: s for s in defs.schedules}
    assert schedules["daily_training_job_schedule"].cron_schedule == "0 3 * * *"
    # Lineage: the analysts' copy sits downstream of every lake table.
    upstream = graph.get(AssetKey("warehouse_lake_tables")).parent_keys
    assert {k.to_user_string() for k in upstream} >= {f"raw_{s}" for s in STREAMS}


def test_every_warehouse_writer_is_in_the_pool():
    graph = load_defs().resolve_asset_graph()
    for name in ("warehouse_lake_tables", "analytics_db"):
        assert graph.get(AssetKey(name)).pools == {WAREHOUSE_POOL}


def test_every_job_runs_its_steps_in_the_run_process():
    # Dagster's default would be multi_or_in_process (a process, and an import of the code location,
    # per step). Every job, the UI's implicit asset job (one-click materialisations) included, must
    # resolve to the location's executor, and that executor must still retry (RetryPolicy).
    from dagster._core.definitions.executor_definition import in_process_executor

    from tiktok_pipelines.definitions import JOB_EXECUTOR

    assert JOB_EXECUTOR is in_process_executor
    jobs = {j.name: j for j in load_defs().resolve_all_job_defs()}
    assert {"hourly_analytics_job", "ingest_job", "build_all", "__ASSET_JOB"} <= set(jobs)
    wrong = {name: j.executor_def.name for name, j in jobs.items() if j.executor_def.name != "in_process"}
    assert not wrong, wrong
    retries = jobs["hourly_analytics_job"].executor_def.config_schema.as_field().default_value["retries"]
    assert "enabled" in retries
