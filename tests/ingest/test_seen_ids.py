"""Duplicate candidates found in compiled passes (``ingest/seen.py``), and the judging built on them.

The table's membership must be exact (ids compared by their bytes, whatever their hashes), and
the engine must judge an id the same whichever path typed each copy (the compiled path or the
SQL) and whichever chunk of the batch it came in.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from tests.ingest.conftest import FLUSHED_AT_MS, dumps, valid_record, write_landing
from tiktok_pipelines.ingest.engine import QUARANTINE_DIR, IngestSettings, events_table, ingest_files, table_source
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.ingest.seen import SeenIds, hash_ids, id_arrays, repeated
from tiktok_pipelines.schemas import STREAMS


def _ids(strings: list[str]):
    return id_arrays([pa.array(strings)])


def test_membership_compares_bytes_when_hashes_collide():
    names = [f"id-{i}" for i in range(200)] + ["", "é", "a" * 40]
    _, offsets, data = _ids(names)
    same = np.full(len(names), 7, np.uint64)  # every id on one hash: only the bytes tell them apart
    seen = SeenIds()
    take = np.arange(len(names)) % 2 == 0
    seen.add(offsets, data, same, np.arange(len(names), dtype=np.int64) * 10, take)
    entries = seen.lookup(offsets, data, same)
    assert ((entries >= 0) == take).all()
    assert seen.payload_hashes(entries[take]).tolist() == (np.flatnonzero(take) * 10).tolist()
    # An id with the same hash and length but other bytes is not a member.
    _, o2, d2 = _ids(["id-1", "id-3", "id-0"])
    assert seen.lookup(o2, d2, np.full(3, 7, np.uint64)).tolist()[:2] == [-1, -1]
    assert seen.lookup(o2, d2, np.full(3, 7, np.uint64))[2] >= 0


def test_members_survive_growth_across_many_adds():
    rng = np.random.default_rng(5)
    seen = SeenIds()
    added: dict[str, int] = {}
    for batch in range(12):
        names = [f"ev{batch}-{i}-{rng.integers(1 << 40)}" for i in range(3000)]
        _, offsets, data = _ids(names)
        hashes = hash_ids(offsets, data)
        payload = rng.integers(-(1 << 62), 1 << 62, len(names))
        take = rng.random(len(names)) < 0.7
        assert (seen.lookup(offsets, data, hashes) == -1).all()  # none added before
        seen.add(offsets, data, hashes, payload, take)
        added.update({n: int(p) for n, p, t in zip(names, payload, take) if t})
    names = list(added) + ["never-added", "ev0-0"]
    _, offsets, data = _ids(names)
    entries = seen.lookup(offsets, data, hash_ids(offsets, data))
    assert (entries[: len(added)] >= 0).all() and (entries[len(added):] == -1).all()
    assert seen.payload_hashes(entries[: len(added)]).tolist() == list(added.values())
    assert seen.count == len(added)
    seen.reset()
    assert (seen.lookup(offsets, data, hash_ids(offsets, data)) == -1).all()


def test_hashes_and_repeats():
    _, offsets, data = _ids(["a", "b", "a", "", "ab", "ba", "b", "x" * 17, "x" * 16])
    hashes = hash_ids(offsets, data)
    assert (hashes != 0).all() and len(set(hashes.tolist())) == 7
    assert repeated(hashes).tolist() == [True, True, True, False, False, False, True, False, False]
    rng = np.random.default_rng(0)
    h = rng.integers(1, 5000, 20000).astype(np.uint64)
    _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    assert (repeated(h) == (counts[inverse] > 1)).all()
    assert repeated(np.zeros(0, np.uint64)).tolist() == []


def _escaped(line: str, event_id: str) -> str:
    """The line with its event id written with a JSON escape: the same record, but one the
    compiled path leaves to the SQL."""
    escaped = "".join(f"\\u{ord(c):04x}" for c in event_id)
    out = line.replace(f'"event_id": "{event_id}"', f'"event_id": "{escaped}"')
    assert out != line
    return out


@pytest.mark.parametrize("compiled", [True, False])
def test_copies_judged_across_chunks_and_paths(compiled, dirs):
    """Every file its own chunk; each id's copies typed by either path."""
    landing, lake = dirs
    schema = STREAMS["views"]
    a, b, c, d = (valid_record(schema, i, event_id=name) for i, name in enumerate("ABCD"))
    conflict = lambda rec: dict(rec, watch_time_ms=rec["watch_time_ms"] + 1)  # noqa: E731
    files = [
        [dumps(a), _escaped(dumps(b), "B"), dumps(c)],  # first copies (B's through the SQL)
        [_escaped(dumps(a), "A"), dumps(b), dumps(conflict(c))],  # A, B re-sent; C changed
        [_escaped(dumps(conflict(a)), "A"), dumps(d), dumps(d)],  # A changed; D twice in one chunk
    ]
    for seq, lines in enumerate(files, 1):
        write_landing(landing, "views", lines, seq=seq, flushed_at_ms=FLUSHED_AT_MS + seq * 60_000)
    report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake,
                          settings=IngestSettings(chunk_bytes=1, compiled_typing=compiled),
                          now_ms=FLUSHED_AT_MS + 3_600_000)
    assert report.totals() == {"files": 3, "rows_read": 9, "rows_lake": 4, "rows_quarantine": 2,
                               "rows_duplicate": 3}
    assert (report.compiled_lines == 6) if compiled else (report.compiled_lines == 0)
    con = duckdb.connect()
    lake_rows = con.sql(f"SELECT event_id, _src_file, _src_line FROM {table_source(con, lake, events_table('views'))} "
                        "ORDER BY event_id").fetchall()
    # (id, the file's sequence number, line)
    assert [(e, f[-11:-7], line) for e, f, line in lake_rows] == [
        ("A", "0001", 1), ("B", "0001", 2), ("C", "0001", 3), ("D", "0003", 2)]
    quarantined = con.sql(f"SELECT event_id, src_file, src_line, reason FROM "
                          f"{table_source(con, lake, QUARANTINE_DIR)} ORDER BY event_id").fetchall()
    assert [(e, f[-11:-7], line, r) for e, f, line, r in quarantined] == [("A", "0003", 1, "conflicting_duplicate"), ("C", "0002", 3, "conflicting_duplicate")]
