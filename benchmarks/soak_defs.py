"""The soak's code location: the production sensors and jobs, bound to the soak's work directory.

``benchmarks/soak.py`` evaluates these in process (``--in-process``) or hands this file to a real
``dagster-daemon run -f benchmarks/soak_defs.py``, which loads it in a code server of its own and
launches every run the sensors request in a run worker process, as in production. The daemon gets
the work directory, the republish interval and the landing sensor's sweep interval from the
environment (``TIKTOK_SOAK_WORK``, ``TIKTOK_SOAK_PUBLISH_EVERY``, ``TIKTOK_SOAK_SWEEP_S``).

What differs from the product's code location, and why: only the assets the loop touches (the
features, tagging and SQL marts would compete for the two cores without changing what the soak
audits), LightGBM with 30 rounds (the warm-up's batch retrain in seconds), and
``analytics_republish_sensor`` in place of the hourly schedule, so analysts see the database
swapped under them every ``TIKTOK_SOAK_PUBLISH_EVERY`` seconds rather than once an hour, and the
landing sensor's sweep every 30 s rather than 5 min, so that even the short soak sweeps while runs
are queued, running and committing (a sweep that asked for a file some run was taking would show
as an ingest run tagged ``landing/sweep``: the soak counts them).
"""

import os
from pathlib import Path

import dagster as dg

from tiktok_pipelines.defs.catalog.assets import catalog_assets
from tiktok_pipelines.defs.ingest.assets import ingest_job, ingest_landing
from tiktok_pipelines.defs.ingest.sensors import landing_sensor
from tiktok_pipelines.defs.resources import IngestPolicy, JoinerPolicy, PlatformStorage, TrainingPolicy
from tiktok_pipelines.defs.training.assets import (
    batch_rankers,
    daily_training_job,
    online_ranker,
    online_update_job,
    training_examples,
)
from tiktok_pipelines.defs.training.sensors import online_update_sensor
from tiktok_pipelines.defs.warehouse.assets import analytics_db, warehouse_lake_tables

STOP_PUBLISHING = "stop_publishing"  # a file in the work dir: the drain has begun
REPLAY_SKEW_S = 400 * 86_400  # the replay's year ahead plus its days

analytics_publish_job = dg.define_asset_job(
    "analytics_publish_job", selection=[warehouse_lake_tables, analytics_db])
catalog_job = dg.define_asset_job("catalog_job", selection=dg.AssetSelection.assets(*catalog_assets))


def build_defs(work: Path, publish_every: float = 30.0, sweep_s: float = 30.0) -> dg.Definitions:

    @dg.sensor(job=analytics_publish_job, minimum_interval_seconds=max(1, int(publish_every)),
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="The soak's stand-in for the hourly analytics schedule.")
    def analytics_republish_sensor(context: dg.SensorEvaluationContext):
        if (work / STOP_PUBLISHING).exists():
            yield dg.SkipReason("the soak is draining")
            return
        yield dg.RunRequest()

    return dg.Definitions(
        assets=[ingest_landing, *catalog_assets, training_examples, batch_rankers, online_ranker,
                warehouse_lake_tables, analytics_db],
        jobs=[ingest_job, online_update_job, daily_training_job, analytics_publish_job, catalog_job],
        sensors=[landing_sensor, online_update_sensor, analytics_republish_sensor],
        resources={"storage": PlatformStorage(data_dir=str(work)),
                   # The soak replays a world dated a year ahead of the wall clock (soak.py says
                   # why): its clock bound (names, events, the online watermark) is widened to
                   # cover it, as a replay must; what lies beyond it is still quarantined.
                   "ingest_policy": IngestPolicy(sensor_sweep_s=sweep_s, max_flush_ahead_seconds=REPLAY_SKEW_S),
                   "joiner_policy": JoinerPolicy(), "training_policy": TrainingPolicy(lgbm_rounds=30)},
    )


if "TIKTOK_SOAK_WORK" in os.environ:  # loaded by dagster-daemon
    defs = build_defs(Path(os.environ["TIKTOK_SOAK_WORK"]), float(os.environ.get("TIKTOK_SOAK_PUBLISH_EVERY", "30")),
                      float(os.environ.get("TIKTOK_SOAK_SWEEP_S", "30")))
