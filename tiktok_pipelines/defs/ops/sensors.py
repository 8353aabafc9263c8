"""Operations' sensors: failed runs become alerts, and the assets' automation conditions are
evaluated. The other domains' sensors are in their own ``sensors.py`` (ingest, training, features)."""

import dagster as dg

from tiktok_pipelines.alerts import append_alert
from tiktok_pipelines.defs.ops.alerts import alert_record
from tiktok_pipelines.defs.resources import PlatformStorage


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Records every failed run of this code location as a JSON line in "
    "data/alerts/alerts.jsonl (run id, job, failed steps, errors, time) and logs it at ERROR.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, storage: PlatformStorage):
    record = alert_record(context)
    append_alert(storage.alerts, record)
    context.log.error(
        f"ALERT run {record['run_id']} of {record['job']} failed "
        f"(steps: {', '.join(record['failed_steps']) or 'none'}): {record['error'][:500]}"
    )


# Evaluates the assets' automation conditions (only video_tags has one: eager, so a reloaded
# catalog is re-tagged). Declared rather than left to Dagster's implicit default sensor so that its
# status and interval are chosen here: RUNNING, once a minute.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Evaluates the automation conditions (video_tags: eager, after the catalog changes).",
)
