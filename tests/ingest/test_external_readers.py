"""An engine that knows only Delta Lake reads what the ingest wrote, on local disk and on S3, with no
project code: polars' ``scan_delta`` and DuckDB over delta-rs's Arrow dataset count exactly the rows
the ingest report says it committed, and neither sees a file no commit names (one a dead writer
left in a table's folder).
"""

from __future__ import annotations

import os

import duckdb
import polars as pl
import pyarrow.fs as pafs
from deltalake import DeltaTable

from tests.s3 import is_s3, lake_storage_options
from tiktok_pipelines.ingest.engine import ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.simulator import simulate


def _filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    """A plain Arrow file system for the store, and the root's path on it (to plant an orphan)."""
    if not is_s3(root):
        return pafs.LocalFileSystem(), root
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    return pafs.S3FileSystem(endpoint_override=endpoint.split("://", 1)[1], scheme="http",
                             region=os.environ["AWS_REGION"]), root[len("s3://"):]


def _counts(uri: str, options: dict | None) -> tuple[int, int, int]:
    """(polars rows, DuckDB rows, DuckDB distinct event ids) of a Delta table's newest version."""
    polars_rows = pl.scan_delta(uri, storage_options=options).select(pl.len()).collect().item()
    dataset = DeltaTable(uri, storage_options=options).to_pyarrow_dataset()
    con = duckdb.connect()
    con.register("t", dataset)
    rows, ids = con.sql("SELECT count(*), count(DISTINCT event_id) FROM t").fetchall()[0]
    con.close()
    del dataset
    return polars_rows, rows, ids


def test_polars_and_duckdb_read_the_ingested_lake_without_project_code(tmp_path, lake_root: str) -> None:
    data = tmp_path / "data"
    simulate(data, seed=3, users=100, videos=200, days=1, events_per_day=4_000, start_date="2026-11-01",
             kuairec_dir=None, write_truth=False, dirty_rate=0.02)
    landing = data / "landing"
    report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake_root)
    options = lake_storage_options(lake_root)
    streams = sorted({f.file.stream for f in report.files})
    assert len(streams) >= 3

    fs, base = _filesystem(lake_root)
    for stream in streams:
        expected = report.totals(stream)["rows_lake"]
        uri = f"{lake_root}/events/{stream}"
        assert expected > 0 and _counts(uri, options) == (expected, expected, expected), stream
        # A Parquet file in the table's folder that no commit names (a dead writer's upload) is
        # invisible to both: they read the log, not a listing.
        part = next(i for i in fs.get_file_info(pafs.FileSelector(f"{base}/events/{stream}", recursive=True))
                    if i.is_file and i.path.endswith(".parquet") and "/_delta_log/" not in i.path)
        fs.copy_file(part.path, part.path.replace(".parquet", "-orphan.parquet"))
        assert _counts(uri, options) == (expected, expected, expected), stream

    quarantine = pl.scan_delta(f"{lake_root}/quarantine", storage_options=options).select(pl.len()).collect().item()
    assert quarantine == report.totals()["rows_quarantine"] > 0
    log = pl.scan_delta(f"{lake_root}/ingest_log", storage_options=options).collect()
    assert log.height == len(report.files) and log["rows_lake"].sum() == report.totals()["rows_lake"]
