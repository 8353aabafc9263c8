"""The features' sensor: the feature dates the lake informs become partitions as the ingest
commits events. The partitioned assets, their schedule and the backfill are in ``assets.py``."""

import dagster as dg

from tiktok_pipelines.defs.features.assets import FEATURE_DATES, FEATURE_PARTITIONS, feature_dates
from tiktok_pipelines.defs.resources import PlatformStorage


@dg.sensor(
    name="feature_dates_sensor",
    minimum_interval_seconds=300,  # dates appear once a day; a tick reads three Delta logs
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds the feature dates the lake now informs (from its first event date through the "
    "day after its last, none after today UTC) as partitions of the feature assets. Requests no run: "
    "features_daily_schedule computes the newest date at 02:00; older ones are a backfill.",
)
def feature_dates_sensor(context: dg.SensorEvaluationContext, storage: PlatformStorage):
    dates, later = feature_dates(storage)
    if not dates:
        return dg.SkipReason("no events in the lake yet")
    known = set(context.instance.get_dynamic_partitions(FEATURE_DATES))
    new = [d for d in dates if d not in known]
    if not new:
        waiting = f"; {', '.join(later)} once complete" if later else ""
        return dg.SkipReason(f"every feature date the lake informs is a partition ({dates[0]} .. {dates[-1]}){waiting}")
    return dg.SensorResult(dynamic_partitions_requests=[FEATURE_PARTITIONS.build_add_request(new)])
