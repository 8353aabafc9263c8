"""Two simulated days through the sensor and real Dagster runs; counts reconciled exactly."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from tiktok_pipelines.definitions import defs as load_defs
from tiktok_pipelines.defs.ingest.assets import ingest_job
from tiktok_pipelines.defs.ingest.sensors import landing_sensor
from tiktok_pipelines.defs.jobs import build_all
from tiktok_pipelines.defs.resources import (
    IngestPolicy,
    PlatformStorage,
    default_resources,
)
from tiktok_pipelines.ingest.engine import (
    INGEST_LOG_DIR,
    QUARANTINE_DIR,
    count_records,
    events_table,
    lake_row_count,
    table_source,
)
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.schemas import STREAMS
from tiktok_pipelines.simulator import simulate
from tiktok_pipelines.warehouse import connect_analytics

REPO = Path(__file__).resolve().parents[2]
KUAIREC = REPO.parent / "shared" / "data" / "kuairec"
SQL_EXAMPLES = sorted((REPO / "sql" / "examples").glob("*.sql"))


def _resources(data: Path, files_per_run: int) -> dict:
    return {
        **default_resources(),
        "storage": PlatformStorage(data_dir=str(data)),
        "ingest_policy": IngestPolicy(files_per_run=files_per_run),
    }


def _defs(data: Path, files_per_run: int) -> dg.Definitions:
    # Every asset and check of the code location (tags, SQL models, attribution, training...), so
    # build_all here is the quick start's job; only the resources point at this test's data.
    full = load_defs()
    return dg.Definitions(
        assets=list(full.assets), asset_checks=list(full.asset_checks or []), jobs=[ingest_job, build_all],
        sensors=[landing_sensor], resources=_resources(data, files_per_run),
    )


def _tick(defs: dg.Definitions, instance, cursor):
    ctx = dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
    )
    result = landing_sensor.evaluate_tick(ctx)
    return result.run_requests or [], result.cursor


def _run_requests(defs, instance, requests):
    job = defs.resolve_job_def("ingest_job")
    for rr in requests:
        res = job.execute_in_process(run_config=rr.run_config, instance=instance, tags={"dagster/run_key": rr.run_key})
        assert res.success
        checks = [e for e in res.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        assert checks and all(e.event_specific_data.passed for e in checks)


def _committed(con, data: Path, table: str) -> str:
    """A lake table's committed snapshot (the files its Delta log names) as a FROM-clause item."""
    source = table_source(con, data / "lake", table)
    assert source is not None, table
    return source


def _lake_counts(data: Path) -> dict[str, int]:
    con = duckdb.connect()
    log = con.sql(
        f"SELECT sum(rows_read), sum(rows_lake), sum(rows_quarantine), sum(rows_duplicate), count(*) "
        f"FROM {_committed(con, data, INGEST_LOG_DIR)}"
    ).fetchall()[0]
    lake = sum(con.sql(f"SELECT count(*) FROM {_committed(con, data, events_table(s))}").fetchall()[0][0]
               for s in STREAMS if table_source(con, data / "lake", events_table(s)) is not None)
    quarantine = con.sql(f"SELECT count(*) FROM {_committed(con, data, QUARANTINE_DIR)}").fetchall()[0][0]
    return {"read": log[0], "log_lake": log[1], "log_quarantine": log[2], "duplicates": log[3],
            "files": log[4], "lake": lake, "quarantine": quarantine}


@pytest.mark.slow
def test_two_days_through_sensor_and_runs(tmp_path, instance):
    data = tmp_path / "data"
    kuairec = KUAIREC if (KUAIREC / "video_captions.csv").exists() else None
    simulate(data, seed=3, users=400, videos=800, days=2, events_per_day=25_000,
             start_date=dt.date(2026, 11, 1), kuairec_dir=kuairec, dirty_rate=0.02)
    defs = _defs(data, files_per_run=60)
    landing = data / "landing"
    files = list_landing_files(landing)
    assert len(files) > 60  # several runs' worth

    requests, cursor = _tick(defs, instance, None)
    assert len(requests) == -(-len(files) // 60)
    assert sorted(f for rr in requests for f in rr.run_config["ops"]["ingest_landing"]["config"]["files"]) == \
        sorted(f.rel_path for f in files)
    _run_requests(defs, instance, requests)

    # Exact reconciliation: every line the simulator wrote is in the lake, in quarantine, or
    # counted as a dropped exact duplicate — recounted from the landing bytes, not from our logs.
    lines_on_disk = sum(count_records(landing / f.rel_path) for f in files)
    c = _lake_counts(data)
    assert c["files"] == len(files)
    assert c["read"] == lines_on_disk
    assert c["lake"] == c["log_lake"] and c["quarantine"] == c["log_quarantine"]
    assert c["lake"] + c["quarantine"] + c["duplicates"] == lines_on_disk
    assert c["quarantine"] > 0 and c["duplicates"] > 0  # the simulator's dirt arrived and was caught

    # And against the simulator's ground truth, file by file and line by line.
    con = duckdb.connect()
    mismatched_files = con.sql(f"""
        SELECT t.rel_path, t.valid, l.rows_lake, t.expected_quarantine, l.rows_quarantine,
               t.expected_duplicate, l.rows_duplicate
        FROM read_parquet('{data}/truth/runs/*/files.parquet') t
        JOIN {_committed(con, data, INGEST_LOG_DIR)} l USING (rel_path)
        WHERE t.valid <> l.rows_lake OR t.expected_quarantine <> l.rows_quarantine
           OR t.expected_duplicate <> l.rows_duplicate
    """).fetchall()
    assert mismatched_files == []
    wrong_reasons = con.sql(f"""
        SELECT t.rel_path, t.line, t.expected_reason, q.reason
        -- invalid UTF-8 is reported as malformed_json:invalid_utf8, the truth says malformed_json
        FROM read_parquet('{data}/truth/runs/*/records.parquet') t
        FULL JOIN {_committed(con, data, QUARANTINE_DIR)} q
          ON q.src_file = t.rel_path AND q.src_line = t.line
        WHERE t.expected_reason IS DISTINCT FROM 'duplicate'
          AND regexp_replace(q.reason, '^malformed_json:.*', 'malformed_json') IS DISTINCT FROM t.expected_reason
    """).fetchall()
    assert wrong_reasons == []

    # The next tick sees nothing new.
    again, cursor2 = _tick(defs, instance, cursor)
    assert again == [] and cursor2 == cursor

    # A third day arrives: only its files are requested, and ingesting them keeps the books balanced.
    simulate(data, seed=3, users=400, videos=800, days=1, first_day=2, events_per_day=25_000,
             start_date=dt.date(2026, 11, 1), kuairec_dir=kuairec, dirty_rate=0.02)
    new_files = [f for f in list_landing_files(landing) if f not in set(files)]
    requests, cursor3 = _tick(defs, instance, cursor)
    assert sorted(f for rr in requests for f in rr.run_config["ops"]["ingest_landing"]["config"]["files"]) == \
        sorted(f.rel_path for f in new_files)
    _run_requests(defs, instance, requests)
    all_files = list_landing_files(landing)
    c3 = _lake_counts(data)
    assert c3["read"] == sum(count_records(landing / f.rel_path) for f in all_files)
    assert c3["lake"] + c3["quarantine"] + c3["duplicates"] == c3["read"]

    # Rerun everything (no file list = all pending): nothing changes.
    before = sorted(p.relative_to(data).as_posix() for p in (data / "lake").rglob("*.parquet"))
    res = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance)
    assert res.success
    assert sorted(p.relative_to(data).as_posix() for p in (data / "lake").rglob("*.parquet")) == before
    assert _lake_counts(data) == c3

    # The main job builds the warehouse and the analysts' database; the analyst SQL runs on it.
    assert defs.resolve_job_def("build_all").execute_in_process(instance=instance).success
    con = connect_analytics(data / "analytics.duckdb")  # raw.* name the lake relative to its folder
    views = con.sql("SELECT count(*) FROM raw.views").fetchall()[0][0]
    assert views == lake_row_count(data / "lake", "views") > 0
    assert con.sql("SELECT count(*) FROM dims.videos").fetchall()[0][0] == 800
    for path in SQL_EXAMPLES:
        rows = con.sql(path.read_text()).fetchall()
        # converting_segments keeps segments with >= 5 reached users: none in a 400-user world
        # (tests/marts checks it returns rows on data built for it)
        assert rows or path.name == "converting_segments.sql", path.name
    con.close()
    mats = instance.get_latest_materialization_event(dg.AssetKey("raw_views"))
    assert mats.asset_materialization.metadata["dagster/row_count"].value == views
