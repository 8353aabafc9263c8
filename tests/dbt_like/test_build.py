"""Build and test on a real DuckDB file: seeds, a view, a table; failing tests counted; failures roll back."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.dbt_like.conftest import write
from tiktok_pipelines.dbt_like import BuildError, load_project

STG_VIEWS = """/* ---
materialized: view
description: Views, typed.
columns:
  event_id:
    description: The event.
    tests: [not_null, unique]
  creator_id:
    description: The creator.
    tests: [not_null, {relationships: {to: "source('dims', 'creators')", field: creator_id}}]
  traffic_source:
    description: How the viewer got there.
    tests: [{accepted_values: {values: [foryou, search, ad]}}]
--- */
SELECT event_id, creator_id, traffic_source FROM {{ source('raw', 'views') }}
"""

TOTALS = """/* ---
materialized: table
description: Views per creator.
unique_key: [creator_id]
columns:
  creator_id:
    description: The creator.
    tests: [not_null]
  views:
    description: How many.
--- */
SELECT creator_id, count(*) AS views,
       (SELECT value FROM {{ ref('shares') }} WHERE key = 'creator') AS creator_share
FROM {{ ref('stg_views') }}
GROUP BY creator_id
"""


@pytest.fixture
def warehouse(tmp_path: Path):
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA raw; CREATE SCHEMA dims")
    # e2 twice (unique: 2 rows), a NULL creator (not_null: 1), 'nope' (accepted_values: 1),
    # creator 3 missing from dims.creators (relationships: 1; the NULL creator does not count).
    con.execute("""CREATE TABLE raw.views AS SELECT * FROM (VALUES
        ('e1', 1, 'foryou'), ('e2', 1, 'search'), ('e2', 2, 'foryou'), ('e3', NULL, 'nope'), ('e4', 3, 'ad'))
        AS t(event_id, creator_id, traffic_source)""")
    con.execute("CREATE TABLE dims.creators AS SELECT * FROM (VALUES (1), (2)) AS t(creator_id)")
    yield con, path
    con.close()


@pytest.fixture
def project_root(models_root):
    return write(models_root, {
        "seeds/shares.csv": "key,value,description\ncreator,0.3,Individual streamer\nplatform,0.7,The rest\n",
        "staging/stg_views.sql": STG_VIEWS,
        "marts/creator_totals.sql": TOTALS,
    })


def _types(con, relation: str) -> dict[str, str]:
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE {relation}").fetchall()}


def test_build_seed_view_and_table_then_test(warehouse, project_root):
    con, path = warehouse
    project = load_project(project_root)
    built = {b.name: b for b in project.build(con)}
    assert [(b.relation, b.materialized, b.rows) for b in built.values()] == [
        ("seeds.shares", "table", 2), ("staging.stg_views", "view", 5), ("marts.creator_totals", "table", 4)]
    assert _types(con, "seeds.shares") == {"key": "VARCHAR", "value": "DOUBLE", "description": "VARCHAR"}
    kinds = dict(con.execute("SELECT table_schema || '.' || table_name, table_type FROM information_schema.tables "
                             "WHERE table_schema IN ('seeds', 'staging', 'marts')").fetchall())
    assert kinds == {"seeds.shares": "BASE TABLE", "staging.stg_views": "VIEW", "marts.creator_totals": "BASE TABLE"}
    assert con.execute("SELECT creator_id, views, creator_share FROM marts.creator_totals ORDER BY 1 NULLS LAST"
                       ).fetchall() == [(1, 2, 0.3), (2, 1, 0.3), (3, 1, 0.3), (None, 1, 0.3)]
    assert built["creator_totals"].columns == (("creator_id", "INTEGER"), ("views", "BIGINT"),
                                               ("creator_share", "DOUBLE"))

    results = {(r.model, r.name): r for r in project.test(con)}
    assert {k: (r.passed, r.failing_rows) for k, r in results.items()} == {
        ("stg_views", "not_null_event_id"): (True, 0),
        ("stg_views", "unique_event_id"): (False, 2),
        ("stg_views", "not_null_creator_id"): (False, 1),
        ("stg_views", "relationships_creator_id"): (False, 1),
        ("stg_views", "accepted_values_traffic_source"): (False, 1),
        ("creator_totals", "not_null_creator_id"): (False, 1),
        ("creator_totals", "unique_key_creator_id"): (True, 0),
    }
    rel = results[("stg_views", "relationships_creator_id")]
    assert (rel.test, rel.column, rel.severity, rel.error) == ("relationships", "creator_id", "warn", None)
    assert results[("stg_views", "unique_event_id")].severity == "error"
    # The SQL a result carries is the SQL that counted it: an analyst can paste it.
    assert con.execute(results[("stg_views", "unique_event_id")].sql).fetchall() == [(2,)]

    # Fix the data: the view follows at once, the table on its next build; every test passes.
    con.execute("DELETE FROM raw.views WHERE event_id IN ('e3', 'e4') OR creator_id = 2")
    project.build(con, select=["creator_totals"])
    assert all(r.passed for r in project.test(con)), project.test(con)
    # Persisted in the file: another connection (after this one closes) sees every relation.
    con.close()
    with duckdb.connect(str(path), read_only=True) as ro:
        assert ro.execute("SELECT count(*) FROM marts.creator_totals").fetchall() == [(1,)]
        assert ro.execute("SELECT count(*) FROM seeds.shares").fetchall() == [(2,)]


def test_select_builds_only_what_is_named(warehouse, project_root):
    con, _ = warehouse
    project = load_project(project_root)
    assert [b.name for b in project.build(con, select=["stg_views"])] == ["stg_views"]
    assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('seeds', 'marts')"
                       ).fetchall() == [(0,)]
    # A relationships test whose target does not exist yet fails with the error, not a crash.
    write(project_root, {"marts/other.sql": "/* ---\ndescription: x\ncolumns:\n  creator_id:\n    tests: "
                         "[{relationships: {to: \"ref('creator_totals')\", field: creator_id}}]\n--- */\n"
                         "SELECT creator_id FROM {{ ref('stg_views') }}\n"})
    project = load_project(project_root)
    project.build(con, select=["other"])
    [r] = project.test(con, select=["other"])
    assert not r.passed and r.failing_rows is None and "creator_totals" in r.error


def _tables_in(con, schema: str) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                                      [schema]).fetchall()}


@pytest.mark.parametrize("broken_sql, message", [
    # A runtime error (the cast fails on 'search'): only running the query finds it.
    ("SELECT creator_id, CAST(traffic_source AS INTEGER) AS views FROM {{ ref('stg_views') }}",
     "Conversion Error"),
    # A binder error.
    ("SELECT creator_id, no_such_column AS views FROM {{ ref('stg_views') }}", "no_such_column"),
])
def test_failed_table_build_leaves_the_previous_table(warehouse, project_root, broken_sql, message):
    con, _ = warehouse
    load_project(project_root).build(con)
    before = con.execute("SELECT * FROM marts.creator_totals ORDER BY 1").fetchall()
    path = project_root / "marts" / "creator_totals.sql"
    path.write_text(TOTALS.split("--- */")[0] + "--- */\n" + broken_sql + "\n")
    project = load_project(project_root)
    with pytest.raises(BuildError) as e:
        project.build(con, select=["creator_totals"])
    assert str(e.value).startswith("dbt_like_models/marts/creator_totals.sql: building marts.creator_totals failed:")
    assert message in str(e.value)
    assert con.execute("SELECT * FROM marts.creator_totals ORDER BY 1").fetchall() == before
    assert _tables_in(con, "marts") == {"creator_totals"}  # no half-built temp table left behind
    # The connection is usable afterwards (the transaction was rolled back, not left open).
    con.execute("CREATE TABLE marts.after_failure AS SELECT 1 AS x")


def test_header_documenting_a_missing_column_fails_and_keeps_old(warehouse, project_root):
    con, _ = warehouse
    load_project(project_root).build(con)
    path = project_root / "marts" / "creator_totals.sql"
    path.write_text(TOTALS.replace("SELECT creator_id, count(*) AS views,", "SELECT creator_id, count(*) AS n,"))
    with pytest.raises(BuildError, match=r"creator_totals.sql: the header documents column\(s\) views that the "
                                         r"query does not return \(it returns: creator_id, n, creator_share\)"):
        load_project(project_root).build(con, select=["creator_totals"])
    assert [r[0] for r in con.execute("DESCRIBE marts.creator_totals").fetchall()] == [
        "creator_id", "views", "creator_share"]


def test_failed_view_build_leaves_the_previous_view(warehouse, project_root):
    con, _ = warehouse
    load_project(project_root).build(con)
    (project_root / "staging" / "stg_views.sql").write_text(
        STG_VIEWS.replace("SELECT event_id,", "SELECT CAST(traffic_source AS INTEGER) AS broken, event_id,"))
    with pytest.raises(BuildError, match="stg_views.sql: building staging.stg_views failed: Conversion Error"):
        load_project(project_root).build(con, select=["stg_views"])
    assert [r[0] for r in con.execute("DESCRIBE staging.stg_views").fetchall()] == [
        "event_id", "creator_id", "traffic_source"]


def test_switching_materialization_replaces_the_relation(warehouse, project_root):
    con, _ = warehouse
    load_project(project_root).build(con)
    path = project_root / "marts" / "creator_totals.sql"

    def kind() -> str:
        return con.execute("SELECT table_type FROM information_schema.tables WHERE table_schema = 'marts' "
                           "AND table_name = 'creator_totals'").fetchall()[0][0]

    path.write_text(TOTALS.replace("materialized: table", "materialized: view"))
    load_project(project_root).build(con)
    assert kind() == "VIEW"
    path.write_text(TOTALS)
    load_project(project_root).build(con)
    load_project(project_root).build(con)  # rebuilding an existing table swaps it again
    assert kind() == "BASE TABLE"
    assert con.execute("SELECT count(*) FROM marts.creator_totals").fetchall() == [(4,)]
