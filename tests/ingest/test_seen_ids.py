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
from tiktok_pipelines.ingest.seen import SeenIds, hash_ids, id_arrays
from tiktok_pipelines.schemas import STREAMS


def _ids(strings: list[str]):
    return id_arrays([pa.array(strings)])


def _meet(seen: SeenIds, names: list[str], payload=None, hashes=None):
    _, offsets, data = _ids(names)
    hashes = hash_ids(offsets, data) if hashes is None else hashes
    payload = np.arange(len(names), dtype=np.int64) if payload is None else np.asarray(payload, np.int64)
    return seen.meet(offsets, data, hashes, payload)


def test_membership_compares_bytes_when_hashes_collide():
    names = [f"id-{i}" for i in range(200)] + ["", "é", "a" * 40]
    seen = SeenIds()
    same = np.full(len(names), 7, np.uint64)  # every id on one hash: only the bytes tell them apart
    entries, met, start = _meet(seen, names, np.arange(len(names)) * 10, same)
    assert start == 0 and not met.any() and sorted(entries.tolist()) == list(range(len(names)))
    # Ids with the same hash and length as members, but other bytes, are not members.
    again = ["id-1", "id-0", "id-x", "é", "ê"]
    entries2, met2, start2 = _meet(seen, again, hashes=np.full(len(again), 7, np.uint64))
    assert start2 == len(names) and met2.tolist() == [True, True, False, True, False]
    assert seen.payload_hashes(entries2[met2]).tolist() == [10, 0, 10 * names.index("é")]


def test_repeats_within_a_chunk_mark_every_copy():
    seen = SeenIds()
    entries, met, _ = _meet(seen, ["a", "b", "a", "c", "b", "b", ""])
    assert met.tolist() == [True, True, True, False, True, True, False]
    assert entries[0] == entries[2] and entries[1] == entries[4] == entries[5] and len(set(entries.tolist())) == 4


def test_settle_keeps_the_lake_copy_and_drops_ids_without_one():
    seen = SeenIds()
    entries, met, start = _meet(seen, ["y", "y", "x"], payload=[1, 2, 3])
    # y's second copy went to the lake (the first was a duplicate of it); x went nowhere (a
    # duplicate of a copy already in the lake).
    seen.settle(entries, np.array([1, 2, 3]), np.array([False, True, False]), start)
    entries2, met2, _ = _meet(seen, ["x", "y"])
    assert met2.tolist() == [False, True]
    assert seen.payload_hashes(entries2[1:]).tolist() == [2]


def test_members_survive_growth_across_many_chunks():
    rng = np.random.default_rng(5)
    seen = SeenIds()
    added: dict[str, int] = {}
    for chunk in range(12):
        names = [f"ev{chunk}-{i}-{rng.integers(1 << 40)}" for i in range(3000)]
        payload = rng.integers(-(1 << 62), 1 << 62, len(names))
        entries, met, start = _meet(seen, names, payload)
        assert not met.any()  # none met before
        lake = rng.random(len(names)) < 0.7
        seen.settle(entries, payload, lake, start)
        added.update({n: int(p) for n, p, t in zip(names, payload, lake) if t})
    names = list(added) + ["never-met", "ev0-0"]
    entries, met, _ = _meet(seen, names)
    assert met[: len(added)].all() and not met[len(added):].any()
    assert seen.payload_hashes(entries[: len(added)]).tolist() == list(added.values())
    seen.reset()
    assert not _meet(seen, names[:100])[1].any()


def test_hashes():
    _, offsets, data = _ids(["a", "b", "a", "", "ab", "ba", "b", "x" * 17, "x" * 16])
    hashes = hash_ids(offsets, data)
    assert hashes[0] == hashes[2] and hashes[1] == hashes[6] and len(set(hashes.tolist())) == 7


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
