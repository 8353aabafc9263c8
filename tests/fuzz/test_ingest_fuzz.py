"""Fuzz the ingest parser: arbitrary bytes and arbitrary JSON in landing files, through the real engine.

Each example writes one to three landing files (any streams) of fuzzed lines, ingests them with
``ingest_files`` into a fresh lake, and checks, counting from what is on disk:

- no exception escapes;
- every non-empty line is in the lake or in quarantine exactly once, or counted as an exact
  duplicate; quarantined lines carry a reason; no line number is invented;
- the batch's own audit (recount from the landing bytes and the files its commits name) balances;
- no staging directory, temp file, data file no commit names or batch in flight is left, and no
  file descriptor leaks;
- a second ingest of the same files changes nothing (no table gets a new version).

The lines mix raw bytes, arbitrary JSON values, valid records with fields replaced by arbitrary
JSON, removed or added, valid records sharing event ids (duplicates and conflicts), and a list of
known-nasty inputs (huge numbers, lone surrogates, NUL, BOM, nesting, NaN).

Hostile files (``test_fuzz_ingest_hostile_files``): the same fuzzed lines under names the engine
must quarantine whole (an impossible flush date, a ``..`` once ``\\`` is a separator, a flush time
in 2099 or 9999, an mtime in 2099 with no time in the name, bytes that are not UTF-8), and empty
files. The batch must commit; every line of a hostile file is in quarantine with the file's reason,
none in the lake.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import fuzz_settings
from tests.ingest.conftest import FLUSHED_AT_MS, valid_record, write_landing
from tiktok_pipelines.ingest.engine import (
    QUARANTINE_DIR,
    STAGING_DIR,
    STATE_TABLE,
    Lake,
    audit_batch,
    duplicate_event_ids,
    events_table,
    ingest_files,
    lake_tables,
)
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.schemas import STREAMS
from tiktok_pipelines.tables import TableStore

STREAM_NAMES = sorted(STREAMS)

NASTY = [
    b"", b" ", b"\r", b"\t", b"\x00", b"\xef\xbb\xbf{}", b"{", b"}", b"{}", b"[]", b"null", b'"x"', b"1e999",
    b"NaN", b"-Infinity", b'{"event_id": "\\ud800"}', b'{"event_id": "\\u0000"}', b'{"event_id": "a\x00b"}',
    b'{"ts_ms": 1e400}', b'{"ts_ms": -1}', b'{"ts_ms": 18446744073709551616}', b'{"ts_ms": 9223372036854775808}',
    b'{"user_id": -9223372036854775809}', b'{"a":1}{"b":2}', b'{"a":1,}', b"{'a': 1}", b"[" * 2000 + b"]" * 2000,
    b'{"x":' * 500 + b"1" + b"}" * 500, b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b'{"event_id": "\xf0\x9f\x98\x80"}',
    b"{" + b'"k": 1, ' * 3000 + b'"z": 2}', b'{"event_id": "' + b"x" * 70_000 + b'"}', b"\\", b'"\\',
]

json_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(),  # unbounded: past int64 and uint64 too
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, -0.0, 1e308, 5e-324]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@st.composite
def record_lines(draw, stream: str) -> bytes:
    """A valid record of the stream, often broken in one or more fields."""
    schema = STREAMS[stream]
    i = draw(st.integers(0, 50))
    # A small pool of ids: exact duplicates and conflicting duplicates happen.
    rec = valid_record(schema, i, event_id=f"fz-{draw(st.integers(0, 5))}")
    # Sometimes re-stamped days back (still within the lateness): copies of an id on other dates.
    rec["ts_ms"] -= draw(st.sampled_from([0, 0, 0, 86_400_000, 3 * 86_400_000]))
    names = [f.name for f in schema.fields]
    for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        action = draw(st.sampled_from(["replace", "delete", "null"]))
        if action == "replace":
            rec[name] = draw(json_values)
        elif action == "delete":
            del rec[name]
        else:
            rec[name] = None
    for key, value in draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)).items():
        rec.setdefault(key, value)
    return json.dumps(rec, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


def _any_json(value, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def lines_for(stream: str, *, raw_bytes: bool):
    kinds = [
        record_lines(stream),
        st.builds(_any_json, json_values, st.booleans()),
        st.sampled_from(NASTY),
    ]
    if raw_bytes:
        kinds.append(st.binary(max_size=200))
    return st.lists(st.one_of(kinds), min_size=1, max_size=25)


@st.composite
def landing_files(draw, *, raw_bytes: bool) -> list[tuple[str, list[bytes], bool]]:
    """1-3 files: (stream, lines, CRLF line ends)."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        stream = draw(st.sampled_from(STREAM_NAMES))
        out.append((stream, draw(lines_for(stream, raw_bytes=raw_bytes)), draw(st.booleans())))
    return out


def _open_fds() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def _read(lake: Path, tables: list[str], columns: list[str]) -> list[dict]:
    """The rows of the tables' committed versions (their Delta snapshots, never a listing)."""
    rows: list[dict] = []
    for t in tables:
        ds = Lake(lake).store.dataset(t)
        if ds is not None:
            rows += ds.to_table(columns=columns).to_pylist()
    return rows


def _versions(lake: Path) -> dict[str, int | None]:
    return {t: Lake(lake).store.version(t) for t in lake_tables()}


# Names the engine must quarantine whole: (file name under dt=2026-11-02/ as bytes, reason, mtime ms).
Y2099_MS = 4_102_358_400_000
HOSTILE_NAMES = {
    "impossible_date": (b"%s-20261399T120000Z-%06d.ndjson", "invalid_flush_time", None),
    "dotdot": (b"x\\..\\%s-%06d.ndjson", "unsafe_name", None),
    "year_2099": (b"%s-20991231T000000Z-%06d.ndjson", "future_flush_time", None),
    "year_9999": (b"%s-99991231T235959Z-%06d.ndjson", "future_flush_time", None),
    "mtime_2099": (b"dump-%s-%06d.ndjson", "future_flush_time", Y2099_MS),
    "not_utf8": (b"%s-\xff\xfe-%06d.ndjson", "undecodable_name", None),
}


def _write_hostile(landing: Path, stream: str, lines: list[bytes], seq: int, kind: str) -> tuple[str, bytes]:
    pattern, _, mtime_ms = HOSTILE_NAMES[kind]
    folder = os.path.join(os.fsencode(landing), stream.encode(), b"dt=2026-11-02")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, pattern % (stream.encode(), seq))
    with open(path, "wb") as fh:
        fh.write(b"".join(line + b"\n" for line in lines))
    if mtime_ms is not None:
        os.utime(path, ns=(mtime_ms * 1_000_000,) * 2)
    # As the lake records it: the path relative to the landing root, \xNN for bytes not UTF-8.
    return os.path.relpath(path, os.fsencode(landing)).decode("utf-8", "backslashreplace"), path


def _check_one(files: list[tuple[str, list[bytes], bool]], kinds: list[str] | None = None) -> dict[str, int]:
    """``kinds``: per file, "normal", "empty" or a key of HOSTILE_NAMES (default: all normal)."""
    kinds = kinds or ["normal"] * len(files)
    with tempfile.TemporaryDirectory(prefix="fuzz-ingest-") as tmp:
        landing, lake = Path(tmp) / "landing", Path(tmp) / "lake"
        expected_lines: dict[str, set[int]] = {}
        file_reason: dict[str, str] = {}
        for seq, ((stream, lines, crlf), kind) in enumerate(zip(files, kinds), start=1):
            lines = [line + b"\r" if crlf else line for line in lines]
            if kind in HOSTILE_NAMES:
                rel, path = _write_hostile(landing, stream, lines, seq, kind)
                file_reason[rel] = HOSTILE_NAMES[kind][1]
            else:
                rel = write_landing(landing, stream, [] if kind == "empty" else lines, seq=seq)
                path = os.fsencode(landing / rel)
            with open(path, "rb") as fh:
                data = fh.read()
            # Independent of the engine: a record is a non-empty segment between '\n's.
            expected_lines[rel] = {n for n, seg in enumerate(data.split(b"\n"), start=1) if seg}

        report = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake,
                              now_ms=FLUSHED_AT_MS)  # no exception may escape
        totals = report.totals()
        n_lines = sum(len(v) for v in expected_lines.values())
        assert totals["rows_read"] == n_lines
        assert totals["rows_read"] == totals["rows_lake"] + totals["rows_quarantine"] + totals["rows_duplicate"]

        in_lake = Counter((r["_src_file"], r["_src_line"])
                          for r in _read(lake, [events_table(s) for s in STREAMS], ["_src_file", "_src_line"]))
        quarantined = _read(lake, [QUARANTINE_DIR], ["src_file", "src_line", "reason"])
        in_quarantine = Counter((r["src_file"], r["src_line"]) for r in quarantined)
        # Exactly once: no line twice in a place, none in both, none invented.
        assert all(n == 1 for n in in_lake.values()) and all(n == 1 for n in in_quarantine.values())
        assert not in_lake.keys() & in_quarantine.keys()
        everywhere = {(rel, n) for rel, nums in expected_lines.items() for n in nums}
        assert in_lake.keys() | in_quarantine.keys() <= everywhere
        assert len(in_lake) == totals["rows_lake"] and len(in_quarantine) == totals["rows_quarantine"]
        assert len(everywhere) - len(in_lake) - len(in_quarantine) == totals["rows_duplicate"]
        assert all(r["reason"] for r in quarantined)
        # A hostile file: every line in quarantine with the file's reason, none in the lake, and
        # the reason in the ingest log; every other file is logged without one.
        logged = {r["rel_path"]: r["file_reason"] for r in Lake(lake).read_ingest_log().to_pylist()}
        assert logged == {rel: file_reason.get(rel) for rel in expected_lines}
        for rel, reason in file_reason.items():
            assert not any(src == rel for src, _ in in_lake)
            assert {(r["src_line"], r["reason"]) for r in quarantined if r["src_file"] == rel} == {
                (n, reason) for n in expected_lines[rel]}
        for stream in STREAMS:
            dates = report.dates_by_stream.get(stream, ())
            assert duplicate_event_ids(lake, stream, dates) == 0
            assert duplicate_event_ids(lake, stream, dates, lateness_days=30) == 0  # across dates too
        assert audit_batch(lake, landing, report.batch_id) == []

        # Nothing left behind: no temp or staged file, no data file outside a commit, no batch in flight.
        committed = {os.path.realpath(u) for t in lake_tables() if t != STATE_TABLE
                     for u in Lake(lake).store.files(t)}
        leftovers = [p.relative_to(lake).as_posix() for p in lake.rglob("*")
                     if ".tmp" in p.name or "#" in p.name
                     or (p.suffix == ".parquet" and "_delta_log" not in p.parts and STATE_TABLE not in p.parts
                         and os.path.realpath(p) not in committed)]
        leftovers += [p.name for p in (lake / STAGING_DIR).iterdir()] if (lake / STAGING_DIR).exists() else []
        assert leftovers == []
        assert Lake(lake).state()[1] is None
        versions = _versions(lake)
        again = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
        assert again.batch_id is None and len(again.skipped_files) == len(files)
        assert _versions(lake) == versions
        return {"inputs": 1, "files": len(files), "lines": n_lines, "lake": totals["rows_lake"],
                "quarantine": totals["rows_quarantine"], "duplicates": totals["rows_duplicate"]}


def _run(tally, name: str, raw_bytes: bool, ci_examples: int, hostile: bool = False) -> None:
    kinds = st.sampled_from(["normal", "normal", "empty", *HOSTILE_NAMES])

    @fuzz_settings(ci_examples)
    @given(landing_files(raw_bytes=raw_bytes), st.lists(kinds, min_size=3, max_size=3) if hostile else st.none())
    def prop(files, file_kinds):
        tally.add(name, **_check_one(files, file_kinds[: len(files)] if file_kinds else None))

    # delta-rs starts its runtime (10 descriptors: epoll, eventfds, sockets) on its first write
    # and keeps it for the process: start it before counting, so a first test counts no leak.
    with tempfile.TemporaryDirectory(prefix="fuzz-warm-") as tmp:
        TableStore.from_config(tmp).ensure("warm", pa.schema([("x", pa.int64())]))
    fds = _open_fds()
    prop()
    # Memory maps, DuckDB connections and Parquet readers are all closed again.
    assert _open_fds() <= fds + 2, (fds, _open_fds())
    tally.add(name, fd_growth=max(0, _open_fds() - fds))


@pytest.mark.slow  # ~10 s: two real ingests per example
def test_fuzz_ingest_arbitrary_bytes(tally):
    _run(tally, "ingest_arbitrary_bytes", raw_bytes=True, ci_examples=60)


@pytest.mark.slow
def test_fuzz_ingest_arbitrary_json(tally):
    _run(tally, "ingest_arbitrary_json", raw_bytes=False, ci_examples=60)


@pytest.mark.slow
def test_fuzz_ingest_hostile_files(tally):
    """Fuzzed lines in files with hostile names or no bytes at all, beside ordinary ones: the
    batch commits and each hostile file is quarantined as a file (review issue 15)."""
    _run(tally, "ingest_hostile_files", raw_bytes=True, ci_examples=40, hostile=True)
