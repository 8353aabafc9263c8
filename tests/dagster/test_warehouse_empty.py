"""Before any event arrives, the warehouse and the analysts' database still build, typed and empty."""

from __future__ import annotations

import dagster as dg
import duckdb

from tests.dagster.conftest import resources_for, write_minimal_catalog
from tiktok_pipelines.defs.catalog.assets import catalog_assets
from tiktok_pipelines.defs.warehouse.assets import analytics_db, warehouse_lake_tables
from tiktok_pipelines.schemas import STREAMS


def test_empty_lake_gives_typed_empty_relations(tmp_path, instance):
    data = tmp_path / "data"
    write_minimal_catalog(data / "catalog", rows=4)
    result = dg.materialize([*catalog_assets, warehouse_lake_tables, analytics_db],
                            resources=resources_for(data), instance=instance)
    assert result.success
    con = duckdb.connect(str(data / "analytics.duckdb"), read_only=True)
    for stream, schema in STREAMS.items():
        cols = {r[0]: r[1] for r in con.sql(f"DESCRIBE raw.{stream}").fetchall()}
        assert set(schema.field_names) <= set(cols)
        assert cols["event_date"] == "DATE"
        assert con.sql(f"SELECT count(*) FROM raw.{stream}").fetchall()[0][0] == 0
    assert con.sql("SELECT count(*) FROM raw.quarantine").fetchall()[0][0] == 0
    assert con.sql("SELECT count(*) FROM dims.users").fetchall()[0][0] == 4
    # Published read-only: nobody writes the analysts' file in place.
    assert not (data / "analytics.duckdb").stat().st_mode & 0o222
