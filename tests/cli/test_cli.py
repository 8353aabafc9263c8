"""The command line: simulate, continue a world, ingest without Dagster, run a job."""

from __future__ import annotations

import json

import duckdb

from tiktok_pipelines.cli import main


def _last_json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_simulate_continue_ingest_and_run(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    common = ["--out", str(data), "--users", "200", "--videos", "300", "--events-per-day", "4000",
              "--kuairec", "none"]
    assert main(["simulate", *common, "--days", "1"]) == 0
    first = _last_json(capsys)
    assert first["first_day"] == 0 and first["catalog_source"] == "generated"
    assert main(["simulate", *common, "--days", "1", "--first-day", "next"]) == 0
    second = _last_json(capsys)
    assert second["first_day"] == 1 and second["start_date"] == "2026-11-02"

    assert main(["ingest", "--data-dir", str(data)]) == 0
    report = _last_json(capsys)
    assert report["rows_read"] == first["lines"] + second["lines"]
    assert report["rows_read"] == report["rows_lake"] + report["rows_quarantine"] + report["rows_duplicate"]
    assert main(["ingest", "--data-dir", str(data)]) == 0
    again = _last_json(capsys)
    assert again["batch_id"] is None and again["rows_read"] == 0 and again["skipped_files"] == report["files"]

    # `run` executes a job against $DAGSTER_HOME's instance (here a fresh one).
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("TIKTOK_DATA_DIR", str(data))
    assert main(["run", "build_all"]) == 0
    assert _last_json(capsys)["success"] is True
    con = duckdb.connect(str(data / "analytics.duckdb"), read_only=True)
    assert con.sql("SELECT count(*) FROM dims.users").fetchall()[0][0] == 200
    assert con.sql("SELECT sum(rows_read) FROM raw.ingest_log").fetchall()[0][0] == report["rows_read"]


def test_ingest_into_a_lake_given_by_location(tmp_path, capsys, lake_root):
    """``ingest --lake`` takes a folder or s3://bucket/prefix (the S3 endpoint from the environment)."""
    from tests.ingest.conftest import dumps, valid_record, write_landing
    from tests.s3 import lake_storage_options
    from tiktok_pipelines.schemas import STREAMS

    data = tmp_path / "data"
    write_landing(data / "landing", "views", [dumps(valid_record(STREAMS["views"], i)) for i in range(7)])
    assert main(["ingest", "--data-dir", str(data), "--lake", lake_root]) == 0
    report = _last_json(capsys)
    assert report["lake"] == lake_root and report["rows_lake"] == 7
    from deltalake import DeltaTable

    assert DeltaTable(f"{lake_root}/events/views", storage_options=lake_storage_options(lake_root)).count() == 7
    assert not (data / "lake").exists()
