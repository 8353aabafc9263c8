"""The hourly analytics job and its schedule (the automation sensor is in ``sensors.py``).

The daily chain keeps its schedules beside the assets they run: ``features_daily_schedule``
(02:00 UTC, ``defs/features``) and ``daily_training_job_schedule`` (03:00 UTC, ``defs/training``;
``batch_rankers`` publishes the full snapshot in the same step when it promotes a torch champion).
Why those times suffice and why each default status is what it is: ``docs/operations.md``.
"""

import dagster as dg

from tiktok_pipelines.defs.ops.policies import IN_FLIGHT

# The SQL models (seeds -> staging -> intermediate -> marts, attribution included: its assets are
# in the marts group), warehouse_lake_tables (every raw.*/dims.* relation for analysts, and
# raw.ad_events for attribution; each SQL model refreshes the ones it reads in its own step), and the
# analysts' copy taken after them. The lake assets the models depend on (raw_*, dim_*) are not in
# it: ingestion runs from the landing sensor, the catalog with build_all or by hand; the models read
# what those last committed.
# Not video_tags (the content group): it changes only when the catalog does, and its automation
# condition re-tags then. By group and name, not by imported key: tests build subsets of the defs.
ANALYTICS_GROUPS = ("seeds", "staging", "intermediate", "marts")
ANALYTICS_SELECTION = dg.AssetSelection.groups(*ANALYTICS_GROUPS) | dg.AssetSelection.assets(
    "warehouse_lake_tables", "analytics_db")
HOURLY_CRON = "30 * * * *"  # half past: away from the 02:00 features and 03:00 retrain starts

hourly_analytics_job = dg.define_asset_job(
    "hourly_analytics_job",
    selection=ANALYTICS_SELECTION,
    description="Refresh raw.*/dims.* over the lake, rebuild every SQL model and the attribution marts "
    "(column tests as checks), then publish analytics.duckdb.",
)


@dg.schedule(
    job=hourly_analytics_job,
    cron_schedule=HOURLY_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour at :30 UTC, unless the previous hourly run is still queued or running "
    "(the warehouse has one writer slot: a second run would only wait behind the first).",
)
def hourly_analytics_schedule(context: dg.ScheduleEvaluationContext):
    busy = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=hourly_analytics_job.name, statuses=IN_FLIGHT), limit=1)
    if busy:
        return dg.SkipReason(f"run {busy[0].run_id} of {hourly_analytics_job.name} is still {busy[0].status.value}")
    when = context.scheduled_execution_time
    return dg.RunRequest(run_key=when.isoformat() if when else None, tags={"analytics/cadence": "hourly"})
