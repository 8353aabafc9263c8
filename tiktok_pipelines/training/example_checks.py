"""What the training_examples asset reports and checks about the committed examples: per date
counts and rates, and the rows that break a label, key or point-in-time rule. SQL in
``sql/example_checks.sql`` and ``sql/examples_by_date.sql``; no Dagster here
(``defs/training/assets.py`` turns the counts into metadata and check results)."""

from __future__ import annotations

import duckdb

from tiktok_pipelines.sqlfiles import load_sql

# The labels, all booleans: a NULL would make a "0 or 1" that is neither.
BOOL_LABELS = ("played", "finished", "liked", "shared", "commented", "followed", "engaged")
KEYS = ("example_id", "ts_ms", "user_id", "video_id", "request_id", "event_date")
COUNTS = ("rows", "null_labels", "inconsistent_labels", "bad_sample_rate", "null_keys", "duplicate_ids",
          "misdated", "video_after_impression")


def failing_counts(con: duckdb.DuckDBPyConnection, source: str | None, *, negative_rate: float,
                   engaged_watch_ratio: float) -> dict[str, int]:
    """The rows breaking each rule (``COUNTS``), from one scan of ``source`` (the examples'
    committed snapshot; None: no examples yet, every count 0)."""
    if source is None:
        return dict.fromkeys(COUNTS, 0)
    row = con.sql(load_sql(__package__, "example_checks", source=source,
                           null_labels=" OR ".join(f"{c} IS NULL" for c in BOOL_LABELS),
                           null_keys=" OR ".join(f"{c} IS NULL" for c in KEYS),
                           negative_rate=repr(negative_rate), engaged_watch_ratio=repr(engaged_watch_ratio)))
    return {k: int(v or 0) for k, v in zip(row.columns, row.fetchall()[0])}


def by_date(con: duckdb.DuckDBPyConnection, source: str) -> list[tuple[str, int, float, float, float]]:
    """(date, examples, engaged rate, played rate, finished rate) per impression date, ascending."""
    return con.sql(load_sql(__package__, "examples_by_date", source=source)).fetchall()
