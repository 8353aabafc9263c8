"""analytics.duckdb can be carried: copied with the lake to another folder, the originals gone, every
view and table still answers, and every column of every mart says what it means (issue 17, part 6).

The warehouse's raw.* and features.* are views over the lake's files by absolute path; the
published copy names them relative to its own folder, resolved from that folder (the working
directory) or with ``SET file_search_path`` to it (``connect_analytics``, the README). And
analytics_db is drawn as the sink it is: its edges come from the writers nothing else reads, while
every SQL model stays upstream of it.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from tiktok_pipelines.definitions import defs as load_defs
from tiktok_pipelines.defs.resources import PlatformStorage, default_resources
from tiktok_pipelines.features.daily import ENTITIES, create_feature_views, write_features
from tiktok_pipelines.simulator import simulate
from tiktok_pipelines.warehouse import absolute_paths, connect_analytics, connect_warehouse

DAY0 = dt.date(2026, 11, 1)
REPO = Path(__file__).resolve().parents[2]


def _relations(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str]]:
    return con.execute(
        "SELECT schema_name, table_name, 'table' FROM duckdb_tables() WHERE NOT internal "
        "AND database_name = current_database() UNION ALL "
        "SELECT schema_name, view_name, 'view' FROM duckdb_views() WHERE NOT internal "
        "AND database_name = current_database() ORDER BY ALL").fetchall()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A small simulated world through the real assets: ingest, catalog, warehouse, tags, every SQL
    model and the attribution marts; the features (a date's rows, with their views in the
    warehouse); then analytics_db publishes. Returns the data folder."""
    data = tmp_path_factory.mktemp("portable") / "data"
    simulate(data, seed=11, users=120, videos=240, days=2, events_per_day=4000, start_date=DAY0,
             kuairec_dir=None, dirty_rate=0.01)
    full = load_defs()
    defs = dg.Definitions(assets=list(full.assets), asset_checks=list(full.asset_checks or []),
                          resources={**default_resources(), "storage": PlatformStorage(data_dir=str(data))})
    graph = defs.resolve_asset_graph()
    # Everything that writes the warehouse, chosen without analytics_db's edges (a test below checks
    # those): all but the features (built below), the models, the lake's care and the publication.
    upstream = (dg.AssetSelection.all() - dg.AssetSelection.groups("features", "training", "experiments", "lake_care")
                - dg.AssetSelection.assets("analytics_db")).resolve(graph)
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance, asset_selection=sorted(upstream)).success
        # The features: their Delta tables in the lake, their views in the warehouse (what the
        # partitioned assets do; built here directly so the test does not depend on partitions).
        day = (DAY0 + dt.timedelta(days=1)).isoformat()
        for entity in ENTITIES:
            write_features(data / "lake", entity, day)
        con = connect_warehouse(data / "warehouse.duckdb")
        try:
            assert all(create_feature_views(con, data / "lake").values())
            con.execute("CHECKPOINT")
        finally:
            con.close()
        assert job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("analytics_db")]).success
    return data


def test_every_column_of_every_mart_has_its_comment(built):
    from tiktok_pipelines.defs.dbt_like.external import load_models

    con = connect_analytics(built / "analytics.duckdb")
    try:
        cols = con.execute("SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() "
                           "WHERE NOT internal AND database_name = current_database()").fetchall()
        rel_comments = dict(((s, n), c) for s, n, c in con.execute(
            "SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE NOT internal UNION ALL "
            "SELECT schema_name, view_name, comment FROM duckdb_views() WHERE NOT internal").fetchall())
    finally:
        con.close()
    marts = [(s, n, c, comment) for s, n, c, comment in cols if s == "marts"]
    assert {n for _, n, _, _ in marts} >= {"ad_performance_daily", "creator_daily", "attribution_credits",
                                           "attribution_journeys"}
    assert [(n, c) for _, n, c, comment in marts if not (comment or "").strip()] == []
    # The comments are the data dictionary's: the models' YAML headers.
    project = load_models()
    by_col = {(s, n, c): comment for s, n, c, comment in cols}
    for m in project.models.values():
        schema, name = m.relation.split(".", 1)
        for c in m.columns.values():
            assert by_col[(schema, name, c.name)] == " ".join(c.description.split()), (m.relation, c.name)
        assert rel_comments[(schema, name)] == " ".join(m.description.split())
    ad = by_col[("marts", "ad_performance_daily", "roas")]
    assert ad.startswith("Purchase value / spend")
    # raw.* carry the event contract's docs where it has them (as the lake assets' column tables).
    from tiktok_pipelines.defs.ingest.assets import _column_schema
    from tiktok_pipelines.schemas import STREAMS

    assert by_col[("raw", "views", "_batch_id")] == "Ingest batch that committed the row."
    for stream in STREAMS:
        for c in _column_schema(stream).columns:
            assert by_col[("raw", stream, c.name)] == (" ".join((c.description or "").split()) or None), (stream, c.name)
    assert rel_comments[("dims", "users")] and rel_comments[("content", "video_tags")]


def test_analytics_db_is_the_sink_and_runs_after_every_sql_model():
    from tiktok_pipelines.defs.dbt_like.assets import model_key
    from tiktok_pipelines.defs.dbt_like.external import load_models
    from tiktok_pipelines.defs.ops.schedules import hourly_analytics_job
    from tiktok_pipelines.defs.warehouse.assets import _relation_key, published_sinks

    project = load_models()
    for name in [*project.models, *project.seeds, *project.external]:
        assert _relation_key(project, name) == model_key(project, name), name
    defs = load_defs()
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey("analytics_db")
    parents = set(graph.get(key).parent_keys)
    assert parents == set(published_sinks())
    assert parents <= set(graph.get_all_asset_keys())  # every edge is to a defined asset
    ancestors = dg.AssetSelection.assets(key).upstream().resolve(graph) - {key}
    job = defs.resolve_job_def(hourly_analytics_job.name)
    in_job = set(job.asset_layer.executable_asset_keys) - {key}
    models = {model_key(project, n) for n in project.models}
    assert models <= in_job
    assert in_job <= ancestors  # every SQL model (and seed, lake refresh, mart) of the job runs first
    assert dg.AssetKey("warehouse_lake_tables") in ancestors and dg.AssetKey("video_tags") in ancestors
    # A sink: no parent is upstream of another parent, except the lake refresh (kept so that a
    # subset run still orders it before the publication) and the attribution marts' own chain
    # (Python assets whose mutual deps the model files do not know).
    redundant = {p for p in parents for q in parents - {p}
                 if p in dg.AssetSelection.assets(q).upstream().resolve(graph)}
    assert redundant <= {dg.AssetKey("warehouse_lake_tables"), dg.AssetKey(["marts", "attribution_journeys"])}
    assert len(parents) < 15  # not the 35 relations it had


def test_the_copy_and_the_lake_move_together(built, tmp_path):
    # Last in the module: it removes the built world the other tests read.
    data = built
    # The warehouse itself names the lake by absolute path (what the copy must not).
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    in_warehouse = absolute_paths(con)
    con.close()
    assert {"raw.views", "raw.ingest_log", "features.user_daily"} <= set(in_warehouse)
    con = connect_analytics(data / "analytics.duckdb")
    kinds = {(s, n): k for s, n, k in _relations(con)}
    before = {(s, n): con.execute(f'SELECT count(*) FROM "{s}"."{n}"').fetchall()[0][0] for s, n in kinds}
    assert absolute_paths(con) == {}
    sqls = con.execute("SELECT sql FROM duckdb_views() WHERE NOT internal").fetchall()
    assert not [s for (s,) in sqls if str(data) in s]  # no trace of the building machine's folder
    con.close()
    assert before[("raw", "views")] > 0 and before[("features", "video_daily")] > 0
    assert before[("marts", "ad_performance_daily")] > 0

    # Copy the file and the lake together; remove the originals (the warehouse too).
    moved = tmp_path / "elsewhere" / "carried"
    moved.mkdir(parents=True)
    shutil.copy2(data / "analytics.duckdb", moved / "analytics.duckdb")
    shutil.copytree(data / "lake", moved / "lake")
    shutil.move(str(data), str(tmp_path / "gone"))
    shutil.rmtree(tmp_path / "gone")
    assert not data.exists()

    # 1. With the documented setting, from any working directory.
    con = connect_analytics(moved / "analytics.duckdb")
    try:
        after = {(s, n): con.execute(f'SELECT count(*) FROM "{s}"."{n}"').fetchall()[0][0]
                 for s, n, _ in _relations(con)}
        assert after == before
        for s, n, _ in _relations(con):  # every column of every relation reads, not only count(*)
            con.execute(f'SELECT * FROM "{s}"."{n}" LIMIT 3').fetchall()
        for example in sorted((REPO / "sql" / "examples").glob("*.sql")):  # the README's examples run
            con.sql(example.read_text()).fetchall()
    finally:
        con.close()

    # 2. As an analyst opens it from its folder with no setting (a fresh process, cwd = the folder),
    # and, from elsewhere, with `SET file_search_path` typed into the session (the README's line).
    probe = textwrap.dedent("""
        import sys, duckdb
        con = duckdb.connect(sys.argv[1], read_only=True)
        if len(sys.argv) > 2:
            con.execute("SET file_search_path = '" + sys.argv[2] + "'")
        rels = con.execute("SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        print(sum(con.execute(f'SELECT count(*) FROM "{s}"."{n}"').fetchall()[0][0] for s, n in rels))
    """)
    views_rows = sum(v for rel, v in before.items() if kinds[rel] == "view")
    out = subprocess.run([sys.executable, "-c", probe, "analytics.duckdb"], cwd=moved,
                         capture_output=True, text=True, check=True).stdout
    assert int(out) == views_rows
    out = subprocess.run([sys.executable, "-c", probe, str(moved / "analytics.duckdb"), str(moved)],
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert int(out) == views_rows
    # Without either, the relative paths are not found (so the setting is what makes it work).
    bad = subprocess.run([sys.executable, "-c", probe, str(moved / "analytics.duckdb")], cwd=tmp_path,
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "No files found" in bad.stderr
