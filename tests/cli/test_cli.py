"""The command line: simulate, continue a world, ingest without Dagster, run a job."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb

from tiktok_pipelines.cli import main


def _last_json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


STEP_LINE = re.compile(r"^  \[ *(\d+)/(\d+)\] (ok|FAILED|skipped) +(\S+)")


def _step_events(instance, run_id: str) -> list:
    import dagster as dg

    kinds = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_SKIPPED}
    return [e for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.event_type in kinds]


def _assert_progress_and_summary(err: str, home, data) -> None:
    """One line per step of every run (the runs backfill_features starts included), in the order
    and with the outcome the event log recorded; no DEBUG stream; a summary saying where things are."""
    import dagster as dg

    assert "DEBUG" not in err and "STEP_START" not in err
    lines = err.splitlines()
    printed = [(m[4], m[3]) for m in map(STEP_LINE.match, lines) if m]
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        runs = sorted(instance.get_runs(), key=lambda r: instance.get_run_record_by_id(r.run_id).create_timestamp)
        recorded = [(e.dagster_event.step_key, {"STEP_SUCCESS": "ok", "STEP_FAILURE": "FAILED",
                                                 "STEP_SKIPPED": "skipped"}[e.dagster_event.event_type_value])
                    for run in runs for e in _step_events(instance, run.run_id)]
    assert len(runs) >= 3 and printed == recorded  # build_all, a features run per day, the republish
    assert sum(1 for line in lines if re.match(r"^\S.*: run [0-9a-f]{8}", line)) == len(runs)
    done = next(line for line in lines if line.startswith("Done in "))
    assert f"{len(runs)} runs, {len(recorded)} steps" in done and "(0 failed)" in done
    for where in (data / "lake", data / "warehouse.duckdb", data / "analytics.duckdb", data / "serving"):
        assert any(line.split()[-1:] == [str(where.absolute())] or f" {where.absolute()}  (" in line for line in lines)
    assert any(line.strip().startswith("make dev") for line in lines)
    query = next(line for line in lines if "duckdb.connect(" in line).strip()
    assert query.startswith(".venv/bin/python -c ")
    # The example query the summary suggests runs (from the repository's root, as printed).
    snippet = query.split('-c "', 1)[1].rstrip('"')
    exec(snippet, {})


def _assert_runs_on_the_timeline(home) -> None:
    """The Overview timeline (dagster-webserver's useRunsForTimeline) drops runs whose
    repositoryOrigin is null: every run of the CLI must carry the code location `dagster dev`
    loads from workspace.yaml. Asked through the same GraphQL field the UI reads."""
    import dagster as dg
    import yaml
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import EmptyWorkspaceTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    workspace = yaml.safe_load((Path(__file__).resolve().parents[2] / "workspace.yaml").read_text())
    location = workspace["load_from"][0]["python_module"]["location_name"]
    query = """query { runsOrError(filter: {statuses: [SUCCESS, FAILURE, CANCELED]}) { ... on Runs {
                 results { id startTime repositoryOrigin { repositoryName repositoryLocationName } } } } }"""
    with dg.instance_for_test(temp_dir=str(home)) as instance, \
            WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as context:
        runs = execute_dagster_graphql(context.create_request_context(), query).data["runsOrError"]["results"]
        assert runs and len(runs) == len(instance.get_runs())
        for run in runs:
            assert run["startTime"] is not None
            assert run["repositoryOrigin"] == {"repositoryName": "__repository__", "repositoryLocationName": location}
            tags = instance.get_run_by_id(run["id"]).tags
            assert tags["dagster/code_location"] == location


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
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1  # stdout is the JSON line alone: scripts read it
    summary = json.loads(captured.out.splitlines()[-1])
    assert summary["success"] is True and summary["features"]["partitions"]
    _assert_progress_and_summary(captured.err, home, data)
    _assert_runs_on_the_timeline(home)
    con = duckdb.connect(str(data / "analytics.duckdb"), read_only=True)
    con.execute(f"SET file_search_path = '{data}'")  # views may name the lake relative to the file
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


def test_run_prints_a_failed_steps_error_in_full_and_verbose_brings_back_debug(tmp_path, capsys, monkeypatch):
    """A step that fails for real (the lake's folder is a file) is printed with its error, its
    causes and their stack traces, on the default output; --verbose brings dagster's DEBUG stream
    back; the JSON line stays the last line of stdout either way."""
    data = tmp_path / "data"
    assert main(["simulate", "--out", str(data), "--users", "200", "--videos", "300", "--events-per-day", "4000",
                 "--kuairec", "none", "--days", "1"]) == 0
    capsys.readouterr()
    (data / "lake").write_text("not a folder")
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("TIKTOK_DATA_DIR", str(data))

    assert main(["run", "ingest_job"]) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out.splitlines()[-1])
    assert result["job"] == "ingest_job" and result["success"] is False
    err = captured.err
    assert "DEBUG" not in err
    assert re.search(r"^  \[  1/1\] FAILED +ingest_landing$", err, re.M)
    assert "FileExistsError" in err and "Stack Trace:" in err
    assert "in writer_lock" in err  # the frame that raised, from the cause's stack, not just a message
    assert re.search(r"^FAILED in .*: 1 run, 1 step, ", err, re.M)
    assert "failed: ingest_landing" in err

    assert main(["run", "ingest_job", "--verbose"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out.splitlines()[-1])["success"] is False
    assert " - DEBUG - " in captured.err and "STEP_START" in captured.err
    assert "FileExistsError" in captured.err and "in writer_lock" in captured.err
    assert not STEP_LINE.search(captured.err)  # the DEBUG stream instead of the step lines
