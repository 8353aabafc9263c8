"""The compiled path (``ingest/fastpath.py``) changes how lines are typed, never what the lake holds.

The same landing files are ingested twice, with the compiled path and without it (every line
through DuckDB's JSON parser): a simulated world with dirty records, small chunks (so ids are
judged against earlier chunks of the batch), then a second batch that re-sends lines (exact and
conflicting duplicates judged against the lake), a producer writing blanks, keys out of order,
escapes and non-ASCII text (lines the compiled path leaves to the SQL), and a file quarantined
whole. Every table must be the same, row for row, and the compiled path must have typed most lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from deltalake import DeltaTable

from tests.ingest.conftest import write_landing
from tiktok_pipelines.ingest.engine import IngestSettings, ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.layout import EVENTS_DIR, INGEST_LOG_DIR, QUARANTINE_DIR
from tiktok_pipelines.schemas import STREAMS
from tiktok_pipelines.simulator import simulate

NOW_MS = 1_793_836_800_000  # 2026-11-05T00:00:00Z: after the simulated days, so none is in the future
# Columns that name the batch (its id differs between the two lakes) or that only one side has.
_BATCH_COLUMNS = ("_batch_id", "batch_id", "file_key")


def _records(landing: Path, stream: str, n: int) -> list[dict]:
    """The first n JSON objects of a stream's landing files."""
    out = []
    for path in sorted((landing / stream).rglob("*.ndjson")):
        for raw in path.read_bytes().splitlines():
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
            if len(out) == n:
                return out
    return out


def _second_batch(landing: Path) -> None:
    """Re-sent and reworded lines of the first batch, and lines of producers the compiled path
    does not take as they are."""
    recs = {stream: _records(landing, stream, 300) for stream in STREAMS}
    flushed = NOW_MS - 3_600_000
    # Exact copies (duplicates), and copies with another score (conflicting duplicates).
    imps = recs["impressions"]
    write_landing(landing, "impressions", [json.dumps(r, separators=(",", ":")) for r in imps[:150]], seq=901,
                  flushed_at_ms=flushed)
    changed = [dict(r, score=r["score"] / 3 + 0.001) if isinstance(r.get("score"), float) else r for r in imps[150:]]
    write_landing(landing, "impressions", [json.dumps(r, separators=(",", ":")) for r in changed], seq=902,
                  flushed_at_ms=flushed)
    # A producer with blanks, another key order, escapes and non-ASCII text, in every stream.
    for stream, rows in recs.items():
        lines = []
        for i, rec in enumerate(rows[:200]):
            rec = dict(reversed(list(rec.items()))) if i % 3 == 0 else dict(rec)
            if isinstance(rec.get("event_id"), str):
                rec["event_id"] += {1: "-é", 2: '-"q"'}.get(i % 4, "-new")
            lines.append(json.dumps(rec, ensure_ascii=i % 2 == 0))
        write_landing(landing, stream, lines, seq=903, flushed_at_ms=flushed)
    # A file named as flushed in the future: quarantined whole, whatever its lines.
    write_landing(landing, "views", [json.dumps({"event_id": "v-future"})], seq=904, flushed_at_ms=NOW_MS + 86_400_000)


def _table(lake: Path, name: str):
    t = DeltaTable(str(lake / name)).to_pyarrow_table()
    return t.drop_columns([c for c in _BATCH_COLUMNS if c in t.column_names])


def test_the_lake_is_the_same_with_and_without_the_compiled_path(tmp_path: Path) -> None:
    data = tmp_path / "data"
    simulate(data, seed=21, users=300, videos=500, days=2, events_per_day=12_000, start_date="2026-11-02",
             kuairec_dir=None, write_truth=False, dirty_rate=0.03)
    landing = data / "landing"
    lakes = {True: tmp_path / "lake_compiled", False: tmp_path / "lake_sql"}
    reports = {}
    for compiled, lake in lakes.items():
        # Small chunks: most ids are judged against the chunks before them in the batch.
        settings = IngestSettings(chunk_bytes=256 * 1024, compiled_typing=compiled)
        first = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake, settings=settings,
                             now_ms=NOW_MS)
        reports[compiled] = first
    _second_batch(landing)
    for compiled, lake in lakes.items():
        settings = IngestSettings(chunk_bytes=256 * 1024, compiled_typing=compiled)
        second = ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake, settings=settings,
                              now_ms=NOW_MS)
        assert len(second.files) == 2 + len(STREAMS) + 1
        assert second.reasons["conflicting_duplicate"] > 0 and second.totals()["rows_duplicate"] > 0, (second.reasons, second.totals(), [(f.file.rel_path, f.rows_read, f.rows_lake, f.rows_duplicate) for f in second.files])
        assert second.reasons["future_flush_time"] == 1
        reports[compiled] = (reports[compiled].compiled_lines + second.compiled_lines,
                             reports[compiled].totals()["rows_read"] + second.totals()["rows_read"])

    (typed, read), (typed_sql, _) = reports[True], reports[False]
    assert typed > 0.9 * read and typed_sql == 0
    names = [f"{EVENTS_DIR}/{s}" for s in STREAMS] + [QUARANTINE_DIR, INGEST_LOG_DIR]
    con = duckdb.connect()
    for name in names:
        a, b = _table(lakes[True], name), _table(lakes[False], name)
        assert a.num_rows == b.num_rows and a.num_rows > 0, name
        assert a.schema == b.schema, name
        con.register("a", a)
        con.register("b", b)
        only_a = con.sql("SELECT count(*) FROM (SELECT * FROM a EXCEPT ALL SELECT * FROM b)").fetchall()[0][0]
        only_b = con.sql("SELECT count(*) FROM (SELECT * FROM b EXCEPT ALL SELECT * FROM a)").fetchall()[0][0]
        assert only_a == only_b == 0, (name, only_a, only_b)
    # The lines the compiled path left to the SQL were typed there: the reworded producer's
    # lines with non-ASCII and escaped ids are in the lake.
    ids = set(_table(lakes[True], f"{EVENTS_DIR}/views").column("event_id").to_pylist())
    assert any(i.endswith("-é") for i in ids) and any(i.endswith('-"q"') for i in ids)
