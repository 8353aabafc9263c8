"""A batch left in flight whose landing file is gone stops the ingest with a message that says what
to do, and commits nothing more; with the file back, it finishes exactly once."""

from __future__ import annotations

import os

import pytest

from tests.ingest.conftest import dumps, valid_record, write_landing
from tests.ingest.test_landing_and_recovery import _ingest_dying_mid_publish, _lake_ids
from tiktok_pipelines.ingest.engine import BatchInFlightError, Lake, audit_batch, ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.schemas import STREAMS


def test_a_batch_in_flight_whose_file_is_gone_says_so_then_finishes_once_it_is_back(dirs, monkeypatch, tmp_path):
    landing, lake = dirs
    schema = STREAMS["views"]
    recs = [valid_record(schema, i) for i in range(10)]
    rel = write_landing(landing, "views", [dumps(r) for r in recs], seq=1)
    dead = _ingest_dying_mid_publish(landing, lake, monkeypatch, 1)  # events committed, log not
    st = os.stat(landing / rel)
    moved = tmp_path / "aside.ndjson"
    os.replace(landing / rel, moved)
    with pytest.raises(BatchInFlightError, match=f"batch {dead} .*put the file back"):
        ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    assert Lake(lake).state()[1]["batch_id"] == dead and len(Lake(lake).read_ingest_log()) == 0
    os.replace(moved, landing / rel)
    os.utime(landing / rel, ns=(st.st_atime_ns, st.st_mtime_ns))
    report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    assert report.resumed_batches == [dead] and report.batch_id is None
    assert _lake_ids(lake) == sorted(r["event_id"] for r in recs)
    assert audit_batch(lake, landing, dead) == []
