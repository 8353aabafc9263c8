from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiktok_pipelines.defs.catalog.assets import catalog_assets
from tiktok_pipelines.defs.ingest.assets import ingest_landing
from tiktok_pipelines.defs.resources import IngestPolicy, JoinerPolicy, PlatformStorage, TrainingPolicy
from tiktok_pipelines.defs.warehouse.assets import analytics_db, warehouse_lake_tables
from tiktok_pipelines.schemas import CATALOG

ALL_ASSETS = [ingest_landing, *catalog_assets, warehouse_lake_tables, analytics_db]

_SAMPLE = {"string": "x", "int64": 1, "float64": 0.5, "bool": False, "list<string>": ["#tag"]}
_TYPES = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
          "list<string>": pa.list_(pa.string())}


def write_minimal_catalog(catalog_dir: Path, rows: int = 3) -> None:
    """A tiny catalog in the contract's columns, for tests that do not need the simulator."""
    catalog_dir.mkdir(parents=True, exist_ok=True)
    for name, table in CATALOG.items():
        cols = {}
        for i, (col, typ) in enumerate(table.columns.items()):
            cols[col] = pa.array([k if i == 0 else _SAMPLE[typ] for k in range(rows)], _TYPES[typ])
        pq.write_table(pa.table(cols), catalog_dir / f"{name}.parquet")


@pytest.fixture
def instance():
    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1}}}) as inst:
        yield inst


def resources_for(data_dir: Path) -> dict:
    return {"storage": PlatformStorage(data_dir=str(data_dir)), "ingest_policy": IngestPolicy(),
            "joiner_policy": JoinerPolicy(), "training_policy": TrainingPolicy()}
