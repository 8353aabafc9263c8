"""The validation queries as the engine runs them, rendered into ``sql/ingest_validation/`` for
people to read and review, are never stale in the repo (as docs/data_dictionary.md)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tiktok_pipelines.ingest.engine import IngestSettings
from tiktok_pipelines.ingest.validate import rendered_validation
from tiktok_pipelines.schemas import STREAMS

COMMITTED = Path(__file__).resolve().parents[2] / "sql" / "ingest_validation"


def _expected() -> dict[str, str]:
    s = IngestSettings()
    return rendered_validation(s.future_skew_seconds * 1000, s.max_lateness_days * 86_400_000)


def test_committed_rendered_validation_is_fresh():
    expected = _expected()
    assert sorted(p.name for p in COMMITTED.glob("*.sql")) == sorted(expected)
    for name, text in expected.items():
        assert (COMMITTED / name).read_text(encoding="utf-8") == text, (
            f"sql/ingest_validation/{name} is stale: run `python -m tiktok_pipelines.ingest.validate`")


def test_rendered_queries_run():
    """Each rendered file is a query DuckDB binds over the engine's two relations."""
    con = duckdb.connect()
    con.execute("CREATE TABLE lines (src_file_idx INTEGER, src_line BIGINT, line VARCHAR)")
    con.execute("CREATE TABLE files (src_file_idx INTEGER, flushed_at_ms BIGINT)")
    for name, text in _expected().items():
        cols = [d[0] for d in con.execute(text).description]
        assert cols[-3:] == ["event_date", "payload_hash", "reason"]
        assert cols[2:-3] == STREAMS[name.removesuffix(".sql")].field_names
