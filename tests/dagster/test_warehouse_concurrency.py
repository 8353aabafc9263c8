"""Analysts keep querying analytics.duckdb while runs ingest, rebuild and republish it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import dagster as dg
import pytest

from tests.dagster.conftest import ALL_ASSETS, resources_for, write_minimal_catalog
from tests.ingest.conftest import FLUSHED_AT_MS, dumps, valid_record, write_landing
from tiktok_pipelines.schemas import STREAMS

# Two analysts, each its own process (DuckDB shares one open database per path within a process,
# so a reconnect next to a held connection would not open the newly published file):
# "held" keeps one session open, "fresh" reconnects for every query.
ANALYST = textwrap.dedent(
    """
    import json, os, sys, time, duckdb
    path, stop_file, out, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    held = duckdb.connect(path, read_only=True) if mode == "held" else None
    errors, queries, seen = [], 0, []
    deadline = time.time() + 300  # a bound, should the test die before it says stop
    while True:
        # Read whether to stop before querying: the query after "stop" appeared sees the final state.
        last = os.path.exists(stop_file) or time.time() > deadline
        try:
            con = held or duckdb.connect(path, read_only=True)
            con.sql("SELECT count(*), count(DISTINCT user_id) FROM raw.views").fetchall()
            seen.append(con.sql("SELECT count(*) FROM raw.views").fetchall()[0][0])
            con.sql("SELECT u.user_id FROM dims.users u LIMIT 5").fetchall()
            if held is None:
                con.close()
            queries += 1
        except Exception as e:  # the test asserts there are none
            errors.append(repr(e))
        if last:
            break
        time.sleep(0.02)
    json.dump({"errors": errors, "queries": queries, "seen": seen}, open(out, "w"))
    """
)


@pytest.mark.slow
def test_analyst_queries_never_fail_while_runs_write(tmp_path, instance):
    data = tmp_path / "data"
    landing = data / "landing"
    write_minimal_catalog(data / "catalog")
    schema = STREAMS["views"]
    write_landing(landing, "views", [dumps(valid_record(schema, i)) for i in range(100)], seq=1)
    assert dg.materialize(ALL_ASSETS, resources=resources_for(data), instance=instance).success

    stop = tmp_path / "stop"
    analysts = {
        mode: subprocess.Popen([sys.executable, "-c", ANALYST, str(data / "analytics.duckdb"), str(stop),
                                str(tmp_path / f"{mode}.json"), mode],
                               cwd=data)  # from the file's folder: raw.* name the lake relative to it
        for mode in ("held", "fresh")
    }
    try:
        time.sleep(1.0)
        for batch in range(2, 6):
            recs = [valid_record(schema, i, event_id=f"b{batch}-{i}") for i in range(100)]
            write_landing(landing, "views", [dumps(r) for r in recs], seq=batch,
                          flushed_at_ms=FLUSHED_AT_MS + batch * 1000)
            result = dg.materialize(ALL_ASSETS, resources=resources_for(data), instance=instance)
            assert result.success
    finally:
        stop.touch()
        for analyst in analysts.values():
            assert analyst.wait(timeout=60) == 0
    held, fresh = (json.loads((tmp_path / f"{m}.json").read_text()) for m in ("held", "fresh"))
    assert held["errors"] == [] and fresh["errors"] == []
    assert held["queries"] > 4 and fresh["queries"] > 4
    # The held session keeps reading the file it opened, unchanged by four publications; the
    # reconnecting analyst saw the data grow from the first batch to all five.
    assert set(held["seen"]) == {100}
    assert fresh["seen"][0] >= 100 and fresh["seen"][-1] == 500
