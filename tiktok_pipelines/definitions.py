"""The code location: every domain folder under ``defs/`` assembled into one Definitions.

Each domain is a folder ``defs/<domain>/``: ``assets.py`` (assets, their checks, jobs, schedules)
and ``sensors.py`` where it has sensors. Its logic is in the core package of the same name
(``tiktok_pipelines/<domain>/``, no Dagster import); an asset maps the core's report to metadata.
The map and the data flow: ``docs/architecture.md``.

- ``ingest/``: landing NDJSON files -> the lake's Delta tables (events per stream, quarantine,
  ingest log); ``landing_sensor`` requests the runs (core: ``tiktok_pipelines/ingest``).
- ``catalog/``: the platform's reference exports (users, creators, videos, campaigns), checked and
  published as the lake's ``dims/*`` tables (core: ``tiktok_pipelines/dims.py``).
- ``warehouse/``: ``warehouse.duckdb`` (``raw.*`` views over the lake, dims) and the analysts'
  read-only copy ``analytics.duckdb`` (core: ``tiktok_pipelines/warehouse.py``).
- ``dbt_like/``: the dbt-like SQL models of ``dbt_like_models/`` as assets, their column tests as
  checks (core: ``tiktok_pipelines/dbt_like``).
- ``attribution/``: ad journeys and multi-touch attribution marts (core: ``tiktok_pipelines/attribution``).
- ``features/``: daily point-in-time user/video/creator features, partitioned by date; a sensor adds
  the dates (core: ``tiktok_pipelines/features``).
- ``tagging/``: video tags and categories from the catalog (core: ``tiktok_pipelines/tagging``).
- ``training/``: labelled examples, the daily batch retrain with its registry, the sensor-driven
  online updates and Monolith's experiments (core: ``tiktok_pipelines/training``, ``experiments``).
- ``lake/``: care of the lake's Delta tables: compaction, vacuum, a report (core: ``tiktok_pipelines/tables.py``).
- ``ops/``: retry and freshness policies, the hourly analytics schedule, the alert and automation
  sensors.

``defs/resources.py`` binds storage paths and policies (configuration) from the environment;
``defs/jobs.py`` holds the jobs that span domains.

Every job (and every one-click materialisation in the UI) runs its steps in the run's own process
unless it names another executor: see ``JOB_EXECUTOR``.
"""

import importlib
import warnings
from pathlib import Path

import dagster as dg

# Dagster's default (multiprocess) executor starts one process per step, and each one imports this
# code location again: 3-8 s per step, for steps that mostly run one at a time anyway (the warehouse
# writers share the one-slot duckdb_warehouse pool; the SQL models chain). The scheduled hourly job
# took 7 min 24 s for 28 s of work that way. In process, a run imports the code once; pools (the
# instance's concurrency claims), retry policies (retries enabled by default) and asset checks work
# the same. Measured by benchmarks/jobs.py (`make bench-jobs`); docs/operations.md, "Job overhead".
# Not a forked multiprocess executor: delta-rs's tokio runtime does not survive a plain fork.
JOB_EXECUTOR = dg.in_process_executor


@dg.definitions
def defs() -> dg.Definitions:
    # What dg.load_from_defs_folder does, minus its search for pyproject.toml [tool.dg]: an
    # installed package (pip install ., no checkout around it) has none (.ci/install-check).
    tree = dg.ComponentTree(defs_module=importlib.import_module("tiktok_pipelines.defs"),
                            project_root=Path(__file__).resolve().parents[1], code_location_name="tiktok_pipelines")
    with warnings.catch_warnings():  # as load_from_defs_folder: its loaders are "preview" in 1.13
        warnings.simplefilter("ignore", dg.PreviewWarning)
        loaded = tree.build_defs()
    # The default for every job that does not set its own executor_def, the UI's implicit asset job
    # included. merge refuses two different executors, so a defs file that set one would fail loudly.
    return dg.Definitions.merge(loaded, dg.Definitions(executor=JOB_EXECUTOR))
