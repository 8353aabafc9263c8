"""Every column test of every model passes on the tiny data set; every analyst example runs."""

from __future__ import annotations

import duckdb

from tests.marts.tiny_warehouse import EXAMPLES
from tiktok_pipelines.warehouse import publish_analytics

MINE = ("intermediate", "marts")


def test_every_column_test_passes(built) -> None:
    failed = [(r.model, r.column, r.test, r.failing_rows, r.error) for r in built.tests if not r.passed]
    assert failed == []
    tested = {r.model for r in built.tests}
    assert {m.name for m in built.project.models.values()} <= tested


def test_every_intermediate_and_mart_model_has_a_full_header(built) -> None:
    for m in built.project.models.values():
        if m.layer not in MINE:
            continue
        assert m.description and m.unique_key and m.materialized == "table", m.name
        assert all(c.description for c in m.columns.values()), m.name
        assert any(c.tests for c in m.columns.values()), m.name
    marts = {m.name for m in built.project.models.values() if m.layer == "marts"}
    assert {"creator_daily", "creator_revenue_daily", "revenue_rejects", "ad_performance_daily",
            "ad_suggestions", "audience_segments"} <= marts


def test_every_documented_column_exists_and_nothing_is_undocumented(built) -> None:
    con = built.connect()
    try:
        for m in built.project.models.values():
            if m.layer not in MINE:
                continue
            have = [r[0] for r in con.execute(f"DESCRIBE {m.relation}").fetchall()]
            assert have == list(m.columns), m.name
    finally:
        con.close()


def test_every_sql_example_runs_against_the_analytics_copy(built, tmp_path) -> None:
    analytics = tmp_path / "analytics.duckdb"
    publish_analytics(built.path, analytics)
    files = sorted(EXAMPLES.glob("*.sql"))
    names = {f.name for f in files}
    assert {"daily_watch_time.sql", "ingest_health.sql", "quarantine_reasons.sql"} <= names
    assert len(files) >= 7
    con = duckdb.connect(str(analytics), read_only=True)
    try:
        for f in files:
            text = f.read_text()
            assert text.lstrip().startswith("--"), f"{f.name}: start with a comment saying what it answers"
            rows = con.sql(text).fetchall()
            assert rows, f"{f.name} returned no rows"
    finally:
        con.close()
