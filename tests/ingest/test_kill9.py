"""kill -9 an ingest at random moments; the next run restores a lake where every line is exactly once.

The deterministic crash points inside publishing are covered in test_landing_and_recovery.py; this
test kills a real process wherever it happens to be (reading, validating, staging, publishing).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from tiktok_pipelines.ingest.engine import ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.simulator import simulate

INGEST = "from tiktok_pipelines.cli import main; raise SystemExit(main(['ingest', '--data-dir', {data!r}]))"


def _books(data):
    con = duckdb.connect()
    lake = con.sql(f"SELECT count(*), count(DISTINCT event_id) FROM read_parquet('{data}/lake/events/*/*/*.parquet')").fetchall()[0]
    quarantine = con.sql(f"SELECT count(*) FROM read_parquet('{data}/lake/quarantine/*.parquet')").fetchall()[0][0]
    log = con.sql(f"SELECT sum(rows_read), sum(rows_lake), sum(rows_quarantine), sum(rows_duplicate) "
                  f"FROM read_parquet('{data}/lake/ingest_log/*.parquet')").fetchall()[0]
    return {"lake": lake[0], "distinct_ids": lake[1], "quarantine": quarantine, "read": log[0],
            "log_lake": log[1], "log_quarantine": log[2], "duplicates": log[3]}


def _batch_started(staging, since_ns: int) -> bool:
    try:
        return any(p.stat().st_ctime_ns > since_ns for p in staging.iterdir())
    except FileNotFoundError:  # the run's own recovery or commit removed it in between
        return False


@pytest.mark.slow
def test_kill_minus_nine_during_ingest(tmp_path):
    data = tmp_path / "data"
    simulate(data, seed=5, users=300, videos=500, days=1, events_per_day=150_000, start_date="2026-11-01",
             kuairec_dir=None, dirty_rate=0.02)
    # The reference: the same landing files ingested once, undisturbed.
    ref = tmp_path / "ref"
    t0 = time.perf_counter()
    ingest_files(list_landing_files(data / "landing"), landing_root=data / "landing", lake_root=ref / "lake")
    run_s = time.perf_counter() - t0
    expected = _books(ref)

    rng = random.Random(7)
    staging = data / "lake" / "_staging"
    killed = 0
    for _trial in range(8):
        launched_ns = time.time_ns()
        proc = subprocess.Popen([sys.executable, "-c", INGEST.format(data=str(data))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait until this run has started its batch (its staging folder appears), then kill it at
        # a random point of the work: parsing, staging, or publishing.
        while proc.poll() is None and not _batch_started(staging, launched_ns):
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.8) * run_s)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait()
        # Whatever the kill interrupted, committed data never holds an event twice.
        if not list((data / "lake" / "_pending").glob("*.json")) and list((data / "lake").glob("events/*/*/*.parquet")):
            rows, ids = duckdb.sql(
                f"SELECT count(*), count(DISTINCT event_id) FROM read_parquet('{data}/lake/events/*/*/*.parquet')"
            ).fetchall()[0]
            assert rows == ids
    assert killed >= 2
    # The next run finishes the job; the books equal the undisturbed reference exactly.
    subprocess.run([sys.executable, "-c", INGEST.format(data=str(data))], check=True, capture_output=True)
    assert _books(data) == expected
    assert not list((data / "lake" / "_pending").glob("*.json"))
    assert not any((data / "lake" / "_staging").iterdir())
