"""kill -9 an ingest at random moments, on local disk and on S3; the next run finishes the lake with
every line exactly once.

The deterministic crash points inside committing are covered in test_landing_and_recovery.py; this
test kills a real process wherever it happens to be (reading, validating, staging, uploading, between
two tables' commits, while taking or giving back the lease). After every kill, the committed Delta
versions hold no event twice (a killed writer's files are in no commit, its half-committed batch
stays in flight); the run after the last kill finishes that batch, and the books equal those of the
same landing files ingested once, undisturbed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from tests.s3 import is_s3, new_bucket
from tiktok_pipelines.ingest.engine import (
    INGEST_LOG_DIR,
    QUARANTINE_DIR,
    STAGING_DIR,
    Lake,
    events_table,
    ingest_files,
    table_source,
)
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.schemas import STREAMS
from tiktok_pipelines.simulator import simulate

REPO = Path(__file__).resolve().parents[2]
# A writer process: the engine itself (the CLI knows only a local lake under --data-dir). It notes
# when it starts on its batch (the plan is taken, its staging folder made) and when it starts
# committing it, so that the kills can be aimed at either stretch of the work.
WRITER = """
import sys, time
from tiktok_pipelines.ingest import engine
from tiktok_pipelines.ingest.fastpath import warm_up
warm_up()  # the typing kernel loaded (compiled, on a fresh checkout) before any mark: stretches alike
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.tables import TableStore
landing, lake, marks = sys.argv[1:4]
def mark(what):
    with open(marks, "a") as f:
        f.write(f"{what} {time.time()}\\n")
run_plan, commit_files = engine._run_plan, TableStore.commit_files
def noted_run_plan(*a, **k):
    mark("start")
    return run_plan(*a, **k)
def noted_commit_files(*a, **k):
    mark("commit")
    return commit_files(*a, **k)
engine._run_plan, TableStore.commit_files = noted_run_plan, noted_commit_files
engine.ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
mark("end")
"""


def _count(con: duckdb.DuckDBPyConnection, source: str | None, select: str, empty: tuple) -> tuple:
    return empty if source is None else con.sql(f"SELECT {select} FROM {source}").fetchall()[0]


def _books(lake_root: Path | str) -> dict:
    """The lake's accounting, read through its Delta tables' newest committed versions (never a
    listing of files): rows and distinct event ids per stream summed, quarantine rows, the ingest
    log's sums and how many files it logs (and how many distinct ones)."""
    lake = Lake(lake_root)
    con = duckdb.connect()
    try:
        rows = ids = 0
        for stream in STREAMS:
            t = events_table(stream)
            n, d = _count(con, table_source(con, lake, t),
                          "count(*), count(DISTINCT event_id)", (0, 0))
            rows, ids = rows + n, ids + d
        (quarantine,) = _count(con, table_source(con, lake, QUARANTINE_DIR),
                               "count(*)", (0,))
        log = _count(con, table_source(con, lake, INGEST_LOG_DIR),
                     "sum(rows_read), sum(rows_lake), sum(rows_quarantine), sum(rows_duplicate), "
                     "count(*), count(DISTINCT file_key)", (None,) * 4 + (0, 0))
    finally:
        con.close()
    return {"lake": rows, "distinct_ids": ids, "quarantine": quarantine, "read": log[0], "log_lake": log[1],
            "log_quarantine": log[2], "duplicates": log[3], "log_files": log[4], "distinct_files": log[5]}


def _committed_once(lake_root: Path | str) -> None:
    """Every table's newest committed version (a superset of the earlier ones: the ingest only
    appends) holds each event, and logs each landing file, once."""
    books = _books(lake_root)
    assert books["lake"] == books["distinct_ids"], books
    assert books["log_files"] == books["distinct_files"], books


def _marks(path: Path) -> dict[str, float]:
    """The writer's first time at each mark."""
    out: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            what, at = line.split()
            out.setdefault(what, float(at))
    return out


def _writer(landing: Path, lake_root: str, marks: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(landing), lake_root, str(marks)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_at_random_points(tmp_path: Path, lake_root: str, ref_root: str, *, events: int, trials: int) -> None:
    data = tmp_path / "data"
    simulate(data, seed=5, users=300, videos=500, days=1, events_per_day=events, start_date="2026-11-01",
             kuairec_dir=None, dirty_rate=0.02, write_truth=False)
    landing = data / "landing"
    # The reference: the same landing files ingested once, undisturbed, by the same writer on the
    # same kind of store; its marks time the two stretches of the work.
    ref = _writer(landing, ref_root, tmp_path / "ref.marks")
    assert ref.wait() == 0, ref.stderr.read()[-3000:]
    expected = _books(ref_root)
    assert expected["lake"] == expected["distinct_ids"] > 0 and expected["quarantine"] > 0
    m = _marks(tmp_path / "ref.marks")
    stretch = {"start": m["commit"] - m["start"], "commit": m["end"] - m["commit"]}

    rng = random.Random(7)
    killed = []
    for trial in range(trials):
        # The first half killed while validating and staging, the rest while committing: between
        # two tables' commits, inside one, while giving the lease back. A run after a kill finishes
        # the batch in flight from its plan, so it has both stretches again (shorter commits: the
        # tables it finds committed are skipped).
        anchor = "start" if trial < trials // 2 else "commit"
        marks = tmp_path / f"trial-{trial}.marks"
        proc = _writer(landing, lake_root, marks)
        while proc.poll() is None and anchor not in _marks(marks):
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.95) * stretch[anchor])
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed.append(anchor)
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read()[-3000:]
        # Whatever the kill interrupted, the committed versions never hold an event twice.
        _committed_once(lake_root)
    assert killed.count("start") >= 2 and "commit" in killed, killed
    # The next run finishes the job; the books equal the undisturbed reference exactly.
    done = _writer(landing, lake_root, tmp_path / "last.marks")
    # The marks say how far it got if it fails (an abort after "end" is one at interpreter exit).
    assert done.wait() == 0, (_marks(tmp_path / "last.marks"), done.stderr.read()[-3000:])
    assert _books(lake_root) == expected
    assert Lake(lake_root).state()[1] is None  # no batch left in flight
    if not is_s3(lake_root):
        assert not any((Path(lake_root) / STAGING_DIR).iterdir())


@pytest.mark.slow
def test_kill_minus_nine_during_ingest(tmp_path: Path, lake_root: str) -> None:
    # S3 variant smaller: every commit there is HTTP round trips to the endpoint.
    if is_s3(lake_root):
        ref_root = f"s3://{new_bucket(os.environ['AWS_ENDPOINT_URL'])}/lake"
        _kill_at_random_points(tmp_path, lake_root, ref_root, events=30_000, trials=6)
    else:
        _kill_at_random_points(tmp_path, lake_root, str(tmp_path / "ref" / "lake"), events=150_000, trials=8)

