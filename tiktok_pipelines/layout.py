"""Where things live: the data folder's parts and the lake's table names, spelled here once.

A data folder (``TIKTOK_DATA_DIR``, ``data`` by default)::

    landing/<stream>/dt=<date>/<file>.ndjson   what collectors deliver (schemas.landing_rel_path)
    catalog/<table>.parquet                    the platform's entity tables (schemas.CATALOG)
    truth/                                     the simulator's answers; the pipeline never reads it
    lake/                                      Delta tables (tables.TableStore), or s3://... instead:
        events/<stream>                          valid records, partitioned by event_date
        quarantine                               refused lines with their reason
        ingest_log                               one row per landing file ingested
        _ingest_state                            the ingest's plan generation (one row)
        _staging/<batch>                         a local batch's files before its commit
        features/<entity>                        daily feature partitions (feature_date)
    warehouse.duckdb, analytics.duckdb         the warehouse and the analysts' copy
    models/                                    the model registry
    serving/                                   published serving versions (or s3://... instead)

Pure names, no I/O and no heavy import, so anything may use it. ``DataLayout(root)`` gives the
paths of one data folder; overrides (a lake elsewhere, serving on S3) stay with their callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LANDING = "landing"
CATALOG = "catalog"
TRUTH = "truth"
LAKE = "lake"
WAREHOUSE_DB = "warehouse.duckdb"
ANALYTICS_DB = "analytics.duckdb"
MODELS = "models"
SERVING = "serving"

# Tables inside the lake (names relative to its root; ingest/engine.py's constants of the same names)
EVENTS_DIR = "events"
QUARANTINE_DIR = "quarantine"
INGEST_LOG_DIR = "ingest_log"
STATE_TABLE = "_ingest_state"
STAGING_DIR = "_staging"
FEATURES_DIR = "features"


def events_table(stream: str) -> str:
    """The lake table of one stream's valid records."""
    return f"{EVENTS_DIR}/{stream}"


def _part(name: str) -> property:
    return property(lambda self: self.root / name, doc=f"``<root>/{name}``")


@dataclass(frozen=True)
class DataLayout:
    """The parts of one data folder: ``DataLayout("data").lake`` is ``data/lake`` (a Path)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    landing = _part(LANDING)
    catalog = _part(CATALOG)
    truth = _part(TRUTH)
    lake = _part(LAKE)
    warehouse = _part(WAREHOUSE_DB)
    analytics = _part(ANALYTICS_DB)
    models = _part(MODELS)
    serving = _part(SERVING)
