"""Publishing analytics.duckdb: a new file swapped in by rename, read-only on disk, checked with a
read-only open before it counts as published (issue 15, finding 5).

An analyst who runs as the pipeline's user can still open the file read-write (the owner may
chmod it back, and root ignores modes: CI runs as root), drop things, hold its lock, or be killed
with kill -9 and leave a WAL. None of that may break the next publication or a reader after it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiktok_pipelines.lake import sql_path
from tiktok_pipelines.warehouse import PublishError, connect_analytics, publish_analytics

# An analyst's read-write session on the published file: it drops the view, says "ready" once
# the change is committed (so DuckDB has written it to the WAL), then sits there until killed.
ANALYST_RW = textwrap.dedent(
    """
    import os, sys, time, duckdb
    path = sys.argv[1]
    os.chmod(path, 0o644)  # the owner may undo the read-only mode
    con = duckdb.connect(path)
    con.execute("DROP VIEW raw.views")
    con.execute("CREATE TABLE main.scratch AS SELECT 42 AS x")
    print("ready", flush=True)
    time.sleep(300)
    """
)


def _build_warehouse(root: Path, rows: int) -> Path:
    """A small warehouse: a raw view over a Parquet file and a table, checkpointed and closed."""
    part = root / "lake" / f"views-{rows}.parquet"
    part.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"event_id": [f"e{i}" for i in range(rows)], "user_id": list(range(rows))}), part)
    path = root / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    con.execute(f"CREATE OR REPLACE VIEW raw.views AS SELECT * FROM read_parquet({sql_path(part)})")
    con.execute("CREATE SCHEMA IF NOT EXISTS dims")
    con.execute(f"CREATE OR REPLACE TABLE dims.users AS SELECT range AS user_id FROM range({rows})")
    con.execute("CHECKPOINT")
    con.close()
    return path


def _views_count(path: Path) -> int:
    con = connect_analytics(path)  # read-only, the lake's paths resolved from the file's folder
    try:
        return con.execute("SELECT count(*) FROM raw.views").fetchall()[0][0]
    finally:
        con.close()


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _start_analyst(path: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", ANALYST_RW, str(path)], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    assert line == "ready", f"the analyst session did not start: {line!r}, rc={p.poll()}"
    return p


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".analytics.duckdb"))


@pytest.mark.parametrize("stale", ["killed_session", "garbage"])
def test_a_stale_wal_breaks_neither_the_next_publication_nor_readers(tmp_path, stale):
    analytics = tmp_path / "analytics.duckdb"
    publish_analytics(_build_warehouse(tmp_path, 10), analytics)
    if stale == "killed_session":
        analyst = _start_analyst(analytics)
        os.kill(analyst.pid, signal.SIGKILL)  # kill -9: no checkpoint, the WAL stays
        analyst.wait()
        assert _wal(analytics).stat().st_size > 0
    else:
        _wal(analytics).write_bytes(os.urandom(4096))

    publish_analytics(_build_warehouse(tmp_path, 20), analytics)
    assert not _wal(analytics).exists()  # the old file's WAL went with it
    assert _views_count(analytics) == 20  # a read-only open works, and sees the new file
    assert _views_count(analytics) == 20  # and the next one too (nothing was left to replay)
    assert _leftovers(tmp_path) == []


def test_published_read_only_and_a_stuck_session_on_the_old_file_blocks_no_reader(tmp_path):
    analytics = tmp_path / "analytics.duckdb"
    publish_analytics(_build_warehouse(tmp_path, 10), analytics)
    assert stat.S_IMODE(analytics.stat().st_mode) == 0o444
    if os.geteuid() != 0:  # root ignores the mode bits; anyone else is refused a read-write open
        with pytest.raises(duckdb.Error):
            duckdb.connect(str(analytics))

    analyst = _start_analyst(analytics)  # holds the old file read-write (its lock and a WAL)
    try:
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(analytics), read_only=True)  # what the analysts saw
        publish_analytics(_build_warehouse(tmp_path, 20), analytics)
        assert analyst.poll() is None  # still holding the old file
        assert stat.S_IMODE(analytics.stat().st_mode) == 0o444
        assert not _wal(analytics).exists()
        assert _views_count(analytics) == 20
    finally:
        analyst.kill()
        analyst.wait()
    assert _views_count(analytics) == 20


def test_the_published_file_has_no_wal_even_when_the_warehouse_has_one(tmp_path):
    """A writer killed before its checkpoint leaves warehouse.duckdb.wal: the copy includes what it
    holds and is checkpointed, so the analysts' file never comes with a WAL of its own."""
    warehouse = _build_warehouse(tmp_path, 10)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(
        """
        import sys, time, duckdb
        con = duckdb.connect(sys.argv[1])
        con.execute("CREATE TABLE dims.late AS SELECT 7 AS x")
        print("ready", flush=True)
        time.sleep(300)
        """), str(warehouse)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert _wal(warehouse).exists()
    analytics = tmp_path / "analytics.duckdb"
    publish_analytics(warehouse, analytics)
    assert not _wal(analytics).exists()
    con = duckdb.connect(str(analytics), read_only=True)
    assert con.execute("SELECT x FROM dims.late").fetchall() == [(7,)]
    con.close()
    assert not _wal(analytics).exists()


@pytest.mark.parametrize("broken", ["view_source_gone", "not_a_database"])
def test_a_publication_that_does_not_open_read_only_fails_and_keeps_the_previous_file(tmp_path, broken):
    analytics = tmp_path / "analytics.duckdb"
    publish_analytics(_build_warehouse(tmp_path, 10), analytics)
    before = _digest(analytics)

    bad = tmp_path / "bad"
    bad.mkdir()
    if broken == "view_source_gone":
        warehouse = _build_warehouse(bad, 20)
        for p in (bad / "lake").iterdir():
            p.unlink()  # the view's Parquet file is gone: raw.views no longer runs
    else:
        warehouse = bad / "warehouse.duckdb"
        warehouse.write_bytes(b"not a duckdb file" * 100)
    with pytest.raises(PublishError, match="not published"):
        publish_analytics(warehouse, analytics)
    assert _digest(analytics) == before
    assert stat.S_IMODE(analytics.stat().st_mode) == 0o444
    assert _views_count(analytics) == 10
    assert _leftovers(tmp_path) == []
