"""Ingest runs at once over overlapping file lists, on local disk and on S3: what the daemon does when
a sensor's runs and a catch-up run (no file list: everything pending) are launched together. Each
file is committed by exactly one batch; the other runs skip it.

On local disk the writers also take turns on a file lock; on S3 there is none, so the lease in
``_ingest_state`` alone keeps one batch in flight: a writer that loses the race to plan its batch
finishes the winner's batch from its plan (possibly while the winner is still at it: each table's
commit carries the batch's transaction id, so it lands once), then plans what is left.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from pathlib import Path

from tests.ingest.conftest import dumps, valid_record, write_landing
from tests.ingest.test_kill9 import _books
from tiktok_pipelines.ingest.engine import (
    INGEST_LOG_DIR,
    QUARANTINE_DIR,
    IngestReport,
    IngestSettings,
    Lake,
    count_records,
    events_table,
    ingest_files,
)
from tiktok_pipelines.ingest.landing import LandingFile, list_landing_files
from tiktok_pipelines.schemas import STREAMS
from tiktok_pipelines.simulator import simulate


def _at_once(lists: list[list[LandingFile]], landing: Path, lake_root: str) -> list[IngestReport]:
    """One ingest per file list, in threads released together; every one must succeed. The
    reports in the order of ``lists``."""
    start = threading.Barrier(len(lists))
    reports: dict[int, IngestReport] = {}
    errors = []

    def run(i: int, group: list[LandingFile]) -> None:
        start.wait()
        try:
            reports[i] = ingest_files(group, landing_root=landing, lake_root=lake_root)
        except Exception as e:  # collected: an exception in a thread would not fail the test
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, g)) for i, g in enumerate(lists)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert len(reports) == len(lists)
    return [reports[i] for i in range(len(lists))]


def _files_as_committed(lake_root: str) -> list[str]:
    """Committed files whose object is no longer the one the Delta log describes (its size): a
    second writer of the same batch once replaced them on S3, and readers that trust the log's
    sizes (polars, delta-rs) failed on them."""
    store = Lake(lake_root).store
    fs = store.filesystem()
    bad = []
    for t in _versions(lake_root):
        acts = store.add_actions(t)
        if acts is None:
            continue
        for path, size in zip(acts.column("path").to_pylist(), acts.column("size_bytes").to_pylist()):
            actual = fs.get_file_info(store.fs_path(t, path)).size
            if actual != size:
                bad.append(f"{t}/{path}: logged {size} bytes, holds {actual}")
    return bad


def _every_line_once(landing: Path, lake_root: str, files: list[LandingFile]) -> dict:
    """Every file logged by exactly one batch; the books balance against the landing zone and no
    event is in the lake twice; no batch is left in flight; every committed file is the one its
    commit describes."""
    log = Lake(lake_root).read_ingest_log().to_pylist()
    committed = Counter(r["rel_path"] for r in log)
    assert set(committed) == {f.rel_path for f in files} and set(committed.values()) == {1}
    books = _books(lake_root)
    lines = sum(count_records(landing / f.rel_path) for f in files)
    assert books["read"] == lines == books["lake"] + books["quarantine"] + books["duplicates"]
    assert books["lake"] == books["distinct_ids"] == books["log_lake"] and books["quarantine"] == books["log_quarantine"]
    assert Lake(lake_root).state()[1] is None
    assert _files_as_committed(lake_root) == []
    return books


def _versions(lake_root: str) -> dict[str, int | None]:
    store = Lake(lake_root).store
    return {t: store.version(t) for t in [*(events_table(s) for s in STREAMS), QUARANTINE_DIR, INGEST_LOG_DIR]}


def test_overlapping_ingests_started_together_commit_every_line_once(tmp_path: Path, lake_root: str) -> None:
    data = tmp_path / "data"
    # Fewer events on S3 (every commit is HTTP round trips); the races are the same.
    events = 8_000 if lake_root.startswith("s3://") else 20_000
    simulate(data, seed=12, users=200, videos=400, days=1, events_per_day=events, start_date="2026-11-01",
             kuairec_dir=None, write_truth=False, dirty_rate=0.02)
    landing = data / "landing"
    files = list_landing_files(landing)
    half = len(files) // 2
    # Two sensor-style runs sharing a third of the files, and a catch-up run over all of them.
    lists = [files[: half + len(files) // 6], files[half - len(files) // 6 :], files]
    reports = _at_once(lists, landing, lake_root)

    # Each run committed some of its files in its own batch and skipped the rest, which another
    # batch committed: every file is skipped by all but one of the runs that asked for it.
    by_batch = {r["rel_path"]: r["batch_id"] for r in Lake(lake_root).read_ingest_log().to_pylist()}
    for report, group in zip(reports, lists):
        mine = {f.file.rel_path for f in report.files}
        assert all(by_batch[rel] == report.batch_id for rel in mine) and not mine & set(report.skipped_files)
        assert sorted(mine | set(report.skipped_files)) == sorted(f.rel_path for f in group)
    skipped = Counter(rel for r in reports for rel in r.skipped_files)
    for f in files:
        assert skipped[f.rel_path] == sum(f in g for g in lists) - 1, f.rel_path
    _every_line_once(landing, lake_root, files)


def test_two_writers_given_the_same_files_at_once_commit_them_once(tmp_path: Path, lake_root: str) -> None:
    """The same batch offered twice at once (a sensor's run and its retry, or a run launched twice):
    one batch, committed once; the other writer finds it in flight and finishes it alongside (S3),
    or waits its turn and finds it done (local), and skips every file."""
    landing = tmp_path / "landing"
    views, orders = STREAMS["views"], STREAMS["orders"]
    for seq in range(1, 4):
        write_landing(landing, "views", [dumps(valid_record(views, i, event_id=f"v{seq}-{i}")) for i in range(50)]
                      + ["{not json"], seq=seq)
    write_landing(landing, "orders", [dumps(valid_record(orders, i, event_id=f"o{i}")) for i in range(20)], seq=1)
    files = list_landing_files(landing)

    reports = _at_once([files, files], landing, lake_root)
    [batch] = {r.batch_id for r in reports if r.batch_id is not None}
    committer = next(r for r in reports if r.batch_id is not None)
    other = next(r for r in reports if r is not committer)
    assert committer.totals()["rows_lake"] == 170 and committer.totals()["rows_quarantine"] == 3
    assert other.batch_id is None and sorted(other.skipped_files) == sorted(f.rel_path for f in files)
    assert other.resumed_batches in ([], [batch])
    assert all(Lake(lake_root).store.committed(t, f"ingest:{batch}")
               for t in (events_table("views"), events_table("orders"), QUARANTINE_DIR, INGEST_LOG_DIR))
    books = _every_line_once(landing, lake_root, files)
    assert books["lake"] == 170


def test_the_same_batch_ingested_again_commits_nothing(tmp_path: Path, lake_root: str) -> None:
    """A batch ingested twice, one after the other, and a batch whose writer died after its last
    commit but before giving the lease back (its plan is still in flight): the next writer finishes
    it from its plan and every table skips it (its transaction id is in the log), so no table gets
    a new version."""
    landing = tmp_path / "landing"
    views = STREAMS["views"]
    lines = [dumps(valid_record(views, i, event_id=f"r{i}")) for i in range(30)]
    write_landing(landing, "views", lines + lines[:5], seq=1)  # 5 exact duplicates within the file
    files = list_landing_files(landing)
    first = ingest_files(files, landing_root=landing, lake_root=lake_root)
    assert first.totals() == {"files": 1, "rows_read": 35, "rows_lake": 30, "rows_quarantine": 0, "rows_duplicate": 5}
    versions = _versions(lake_root)

    again = ingest_files(files, landing_root=landing, lake_root=lake_root)
    assert again.batch_id is None and again.skipped_files == [files[0].rel_path] and again.resumed_batches == []
    assert _versions(lake_root) == versions

    # The first writer's plan put back in flight, as if it had died just before clearing it.
    lake = Lake(lake_root)
    plan = {"batch_id": first.batch_id, "now_ms": int(time.time() * 1000),
            "settings": dataclasses.asdict(IngestSettings()), "files": [dataclasses.asdict(files[0])]}
    gen, _ = lake.state()
    assert lake.set_state(gen, plan)
    resumed = ingest_files(files, landing_root=landing, lake_root=lake_root)
    assert resumed.resumed_batches == [first.batch_id] and resumed.batch_id is None
    assert _versions(lake_root) == versions
    _every_line_once(landing, lake_root, files)

