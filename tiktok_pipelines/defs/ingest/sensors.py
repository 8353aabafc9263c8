"""The landing sensor: new landing files -> ingest runs.

What a tick requests (pending files, groups, run keys, the sweep of files whose run failed, the
cursor) is planned by ``tiktok_pipelines/ingest/landing_tick.py`` (``plan_tick``), which says why;
this module reads the instance's runs for it and turns the plan into run requests.
"""


import datetime as dt
import time

import dagster as dg

from tiktok_pipelines.defs.ops.policies import IN_FLIGHT
from tiktok_pipelines.defs.resources import IngestPolicy, PlatformStorage
from tiktok_pipelines.ingest.engine import Lake
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.ingest.landing_tick import TickPlan, plan_tick

# Runs that ended without ingesting what they named; their files wait for the next sweep.
ENDED_UNDONE = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.CANCELING]
# The run store's clock and the sensor's may differ a little: a run that ended this long before the
# last sweep still counts as ended after it (its files wait one sweep more at worst, or were taken).
_CLOCK_SLACK_S = 60


def files_named_by(run_config) -> list[str]:
    """The landing paths a run's config gives ``ingest_landing``; [] for a run that takes every
    pending file (no file list) or does not ingest."""
    cfg = (run_config or {}).get("ops", {}).get("ingest_landing", {}).get("config", {})
    return list(cfg.get("files") or [])


def _files_named(instance: dg.DagsterInstance, filters: dg.RunsFilter) -> set[str]:
    named: set[str] = set()
    for run in instance.get_runs(filters=filters):
        named.update(files_named_by(run.run_config))
    return named


def _files_in_flight(instance: dg.DagsterInstance) -> set[str]:
    """Landing paths named by ingest runs that are queued or running (any job, any sensor)."""
    return _files_named(instance, dg.RunsFilter(statuses=IN_FLIGHT))


def _files_of_runs_ended_since(instance: dg.DagsterInstance, since_ns: int) -> set[str]:
    """Landing paths named by runs that failed or were canceled since ``since_ns``."""
    after = dt.datetime.fromtimestamp(since_ns / 1e9 - _CLOCK_SLACK_S, tz=dt.timezone.utc)
    return _files_named(instance, dg.RunsFilter(statuses=ENDED_UNDONE, updated_after=after))


def _requests(plan: TickPlan):
    for run in plan.runs:
        sweep_tag = {"landing/sweep": str(run.sweep)} if run.sweep is not None else {}
        yield dg.RunRequest(
            run_key=run.run_key,
            run_config={"ops": {"ingest_landing": {"config": {"files": run.files}}}},
            tags={"landing/files": str(len(run.files)), "landing/first": run.files[0], **sweep_tag},
        )


@dg.sensor(
    job_name="ingest_job",
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests an ingest run for landing files that the lake's ingest log does not hold "
    "and no queued or running run names; every sensor_sweep_s also for files whose run failed "
    "(tag landing/sweep). The cursor is a digest of the listing, not a list of files.",
)
def landing_sensor(context: dg.SensorEvaluationContext, storage: PlatformStorage, ingest_policy: IngestPolicy):
    instance = context.instance
    plan = plan_tick(
        context.cursor, list_landing_files(storage.landing), now_ns=time.time_ns(),
        sweep_s=ingest_policy.sensor_sweep_s, files_per_run=ingest_policy.files_per_run,
        in_flight=lambda: _files_in_flight(instance),
        ingested=lambda: Lake(storage.lake_location, storage.lake_store).ingested_keys(),
        failed_since=lambda since_ns: _files_of_runs_ended_since(instance, since_ns))
    for level, message in plan.log:
        getattr(context.log, level)(message)
    if plan.cursor is not None:
        context.update_cursor(plan.cursor)
    if plan.skip:
        yield dg.SkipReason(plan.skip)
        return
    yield from _requests(plan)
