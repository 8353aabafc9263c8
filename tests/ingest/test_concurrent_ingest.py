"""Ingest runs at once over overlapping file lists: what the daemon does when a sensor's runs and a
catch-up run (no file list: everything pending) are launched together. Each file is committed by
exactly one of them; the others skip it."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from tests.ingest.test_kill9 import _books
from tiktok_pipelines.ingest.engine import Lake, count_records, ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.simulator import simulate


def test_overlapping_ingests_started_together_commit_every_line_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    simulate(data, seed=12, users=200, videos=400, days=1, events_per_day=20_000, start_date="2026-11-01",
             kuairec_dir=None, write_truth=False, dirty_rate=0.02)
    landing, lake = data / "landing", data / "lake"
    files = list_landing_files(landing)
    half = len(files) // 2
    # Two sensor-style runs sharing a third of the files, and a catch-up run over all of them.
    lists = [files[: half + len(files) // 6], files[half - len(files) // 6 :], files]
    start = threading.Barrier(len(lists))
    reports, errors = [], []

    def run(group) -> None:
        start.wait()
        try:
            reports.append(ingest_files(group, landing_root=landing, lake_root=lake))
        except Exception as e:  # collected: an exception in a thread would not fail the test
            errors.append(e)

    threads = [threading.Thread(target=run, args=(g,)) for g in lists]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert len(reports) == 3

    # Every file committed by exactly one run; the others listed it as skipped.
    log = Lake(lake).read_ingest_log().to_pylist()
    committed = Counter(r["rel_path"] for r in log)
    assert set(committed) == {f.rel_path for f in files} and set(committed.values()) == {1}
    skipped = Counter(rel for r in reports for rel in r.skipped_files)
    for f in files:
        asked = sum(f in g for g in lists)
        assert skipped[f.rel_path] == asked - 1, f.rel_path
    # The books balance against the landing zone, and no event is in the lake twice.
    books = _books(data)
    lines = sum(count_records(landing / f.rel_path) for f in files)
    assert books["read"] == lines == books["lake"] + books["quarantine"] + books["duplicates"]
    assert books["lake"] == books["distinct_ids"] == books["log_lake"] and books["quarantine"] == books["log_quarantine"]
