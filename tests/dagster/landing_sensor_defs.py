"""A code location for test_sensor_daemon.py: the ingest and the landing sensor over the data
folder named by TIKTOK_TEST_DATA_DIR (the daemon loads it as it loads the project's location)."""

import os

import dagster as dg

from tiktok_pipelines.defs.ingest.assets import ingest_job, ingest_landing
from tiktok_pipelines.defs.ingest.sensors import landing_sensor
from tiktok_pipelines.defs.resources import IngestPolicy, PlatformStorage

defs = dg.Definitions(
    assets=[ingest_landing], jobs=[ingest_job], sensors=[landing_sensor],
    resources={"storage": PlatformStorage(data_dir=os.environ["TIKTOK_TEST_DATA_DIR"]),
               "ingest_policy": IngestPolicy(files_per_run=2, sensor_sweep_s=3600)},
)
