"""The models as Dagster assets: the code location loads with their lineage, and a real run over a
tiny lake builds the staging views (each refreshing the lake relations it reads) and runs their
checks; a broken model fails alone, by file. Every model's edges: tests/dagster/test_lineage.py."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.dagster.conftest import instance, resources_for, write_minimal_catalog  # noqa: F401  (instance: a fixture)
from tests.dbt_like.conftest import write
from tests.ingest.conftest import TS_MS, dumps, valid_record, write_landing
from tiktok_pipelines.dbt_like import load_project
from tiktok_pipelines.dbt_like.project import file_hash
from tiktok_pipelines.definitions import defs as load_defs
from tiktok_pipelines.defs.dbt_like.assets import (
    PROJECT,
    analytics_assets,
    build_analytics_assets,
)
from tiktok_pipelines.defs.dbt_like.external import EXTERNAL_MODELS, model_asset_key, models_dir
from tiktok_pipelines.defs.catalog.assets import catalog_assets, dim_key
from tiktok_pipelines.defs.ingest.assets import ingest_landing, raw_key
from tiktok_pipelines.defs.warehouse.assets import WAREHOUSE_POOL, warehouse_lake_tables
from tiktok_pipelines.schemas import CATALOG, STREAMS

# staging model -> the one lake asset it reads (key ["staging", <file name without stg_>])
STAGING = {f"stg_{s}": raw_key(s) for s in STREAMS} | {f"stg_{n}": dim_key(n) for n in CATALOG}


def test_definitions_load_with_every_model_seed_and_its_deps():
    graph = load_defs().resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    root = models_dir()
    # Every file is an asset: seeds as ["seeds", name], models as [layer, name without stg_/int_],
    # grouped by layer.
    expected = {dg.AssetKey(["seeds", p.stem]) for p in (root / "seeds").glob("*.csv")}
    expected |= {dg.AssetKey([layer, p.stem.removeprefix({"staging": "stg_", "intermediate": "int_"}.get(layer, ""))])
                 for layer in ("staging", "intermediate", "marts") for p in (root / layer).glob("*.sql")}
    assert {dg.AssetKey(["staging", n.removeprefix("stg_")]) for n in STAGING} <= expected <= keys
    assert dg.AssetKey(["intermediate", "creator_views_daily"]) in expected
    for key in expected:
        node = graph.get(key)
        assert node.group_name == key.path[0] and node.pools == {WAREHOUSE_POOL}
        assert "duckdb" in node.kinds
    for name, model in PROJECT.models.items():
        node = graph.get(model_asset_key(model.layer, name))
        assert warehouse_lake_tables.key not in node.parent_keys, name
        assert node.metadata["relation"] == f"{model.layer}.{name}"  # the relation keeps the file's name
        assert node.code_version == file_hash(model.path)
        assert node.description == model.description
        assert {c.name for c in graph.get_check_keys_for_assets({node.key})} == {t.name for t in model.tests}
    for s, lake in STAGING.items():  # staging reads one lake table: raw.<stream> or dims.<name>
        assert graph.get(dg.AssetKey(["staging", s.removeprefix("stg_")])).parent_keys == {lake}
    views = graph.get(dg.AssetKey(["staging", "views"]))
    assert views.kinds == {"duckdb", "sql"}
    cols = views.metadata["dagster/column_schema"].columns
    assert [c.name for c in cols] == [*STREAMS["views"].field_names, "day", "ts"]
    assert {c.name: c.constraints.nullable for c in cols}["event_id"] is False


def _catalog(catalog_dir: Path) -> None:
    """Ids 1..3 (as valid_record's events use), values inside the staging tests' accepted values,
    and user 3 twice: stg_users' unique check must fail with 2 rows."""
    catalog_dir.mkdir(parents=True, exist_ok=True)
    valid = {"age_band": "18-24", "gender": "female", "activity_level": "high", "creator_type": "individual",
             "source": "generated", "ad_format": "feed", "objective": "conversions"}
    sample = {"string": "x", "int64": 1, "float64": 0.5, "bool": False, "list<string>": ["#tag"]}
    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
             "list<string>": pa.list_(pa.string())}
    for name, table in CATALOG.items():
        ids = [1, 2, 3, 3] if name == "users" else [1, 2, 3]
        cols = {}
        for i, (col, typ) in enumerate(table.columns.items()):
            values = ids if i == 0 else [valid.get(col, sample[typ])] * len(ids)
            cols[col] = pa.array(values, types[typ])
        pq.write_table(pa.table(cols), catalog_dir / f"{name}.parquet")


@pytest.mark.slow  # ~40 s here: ten steps and ~90 check evaluations through a real instance
def test_materialize_staging_models_and_checks_on_a_tiny_lake(tmp_path, instance):  # noqa: F811
    data = tmp_path / "data"
    for stream, schema in STREAMS.items():
        write_landing(data / "landing", stream, [dumps(valid_record(schema, i)) for i in range(3)])
    _catalog(data / "catalog")
    staging = [a for a in analytics_assets
               if {k.path[0] for k in a.keys} | {k.asset_key.path[0] for k in a.check_keys} == {"staging"}]
    assert len([a for a in staging if a.keys]) == len(STAGING)
    # No warehouse_lake_tables: each staging step refreshes the raw.*/dims.* relation it reads.
    result = dg.materialize([ingest_landing, *catalog_assets, *staging],
                            resources=resources_for(data), instance=instance)
    assert result.success

    mats = {m.asset_key: m for m in result.get_asset_materialization_events()}
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    # exactly the relations the staging models read were refreshed: not raw.quarantine/ingest_log
    versions = dict(con.execute("SELECT relation, version FROM raw._lake_versions").fetchall())
    assert set(versions) == {f"raw.{s}" for s in STREAMS}
    assert {r for (r,) in con.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                                      "WHERE table_schema = 'dims'").fetchall()} == {f"dims.{n}" for n in CATALOG}
    for stream, schema in STREAMS.items():
        relation = f"staging.stg_{stream}"
        cols = {r[0]: r[1] for r in con.execute(f"DESCRIBE {relation}").fetchall()}
        assert list(cols) == [*schema.field_names, "day", "ts"]
        assert (cols["day"], cols["ts"]) == ("DATE", "TIMESTAMP")
        rows = con.execute(f"SELECT count(*), min(day), min(ts), bool_and(ts = epoch_ms(ts_ms)) FROM {relation}"
                           ).fetchall()[0]
        assert rows[0] == 3 and str(rows[1]) == "2026-11-02" and rows[2].isoformat() == "2026-11-02T11:00:00"
        assert rows[3] is True and TS_MS == 1_793_617_200_000
        meta = mats[dg.AssetKey(["staging", stream])].step_materialization_data.materialization.metadata
        assert meta["dagster/row_count"].value == 3 and meta["relation"].value == relation
        assert f"FROM raw.{stream}" in meta["sql"].value and meta["sql"].value.startswith("```sql")
        version = versions[f"raw.{stream}"]
        assert version is not None
        assert meta["sources_read"].value.endswith(f"| raw.{stream} | {version} | 3 |")
        typed = {c.name: c.type for c in meta["dagster/column_schema"].schema.columns}
        assert typed["ts"] == "TIMESTAMP" and typed["event_id"] == "VARCHAR"
    assert con.execute("SELECT count(*) FROM staging.stg_users").fetchall() == [(4,)]
    assert con.execute("SELECT hashtags FROM staging.stg_videos LIMIT 1").fetchall() == [(["#tag"],)]
    con.close()

    evals = {(tuple(e.asset_key.path), e.check_name): e for e in result.get_asset_check_evaluations()}
    expected = {(tuple(model_asset_key(m.layer, m.name).path), t.name) for m in PROJECT.models.values()
                if m.layer == "staging" for t in m.tests}
    assert expected <= set(evals)
    failed = {k: e for k, e in evals.items() if k in expected and not e.passed}
    assert set(failed) == {(("staging", "users"), "unique_user_id")}
    dup = failed[(("staging", "users"), "unique_user_id")]
    assert dup.severity == dg.AssetCheckSeverity.ERROR and dup.metadata["failing_rows"].value == 2
    rel = evals[(("staging", "views"), "relationships_video_id")]
    assert rel.passed and rel.severity == dg.AssetCheckSeverity.WARN


def test_a_broken_model_fails_alone_and_names_its_file(tmp_path, instance):  # noqa: F811
    root = write(tmp_path / "dbt_like_models", {
        # relationships to a model downstream of stg_ok: that check waits in a step of its own.
        "staging/stg_ok.sql": "/* ---\ndescription: ok\ncolumns:\n  id:\n    tests: [not_null, "
                              "{relationships: {to: \"ref('independent')\", field: id}}]\n--- */\n"
                              "SELECT 1 AS id\n",
        "intermediate/int_broken.sql": "/* ---\nmaterialized: table\ndescription: broken\n--- */\n"
                                       "SELECT CAST('x' || id AS INTEGER) AS id FROM {{ ref('stg_ok') }}\n",
        "marts/after_broken.sql": "/* ---\ndescription: d\n--- */\nSELECT * FROM {{ ref('int_broken') }}\n",
        "marts/independent.sql": "/* ---\nmaterialized: table\ndescription: d\n--- */\n"
                                 "SELECT * FROM {{ ref('stg_ok') }}\n",
    })
    defs = build_analytics_assets(load_project(root, external=EXTERNAL_MODELS))
    assert [d.node_def.name for d in defs if not d.keys] == ["staging__ok__relationships"]
    result = dg.materialize(defs, resources=resources_for(tmp_path / "data"), instance=instance,
                            raise_on_error=False)
    assert not result.success
    built = {tuple(m.asset_key.path) for m in result.get_asset_materialization_events()}
    assert built == {("staging", "ok"), ("marts", "independent")}
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "intermediate__broken"
    text = failure.event_specific_data.error.to_string()
    assert "dbt_like_models/intermediate/int_broken.sql: building intermediate.int_broken failed: Conversion Error" in text
    # Both checks ran and passed: the deferred one after `independent` existed.
    assert {(e.check_name, e.passed) for e in result.get_asset_check_evaluations()} == {
        ("not_null_id", True), ("relationships_id", True)}


def test_a_relationships_test_to_a_source_runs_against_the_lake_as_committed(tmp_path, instance):  # noqa: F811
    # stg_ids reads no source; its test's target dims.users is not upstream of it, so the check
    # waits for dim_users in a step of its own, which loads dims.users from the lake before testing.
    root = write(tmp_path / "dbt_like_models", {
        "staging/stg_ids.sql": "/* ---\ndescription: ids\ncolumns:\n  user_id:\n    tests: "
                               "[{relationships: {to: \"source('dims', 'users')\", field: user_id}}]\n--- */\n"
                               "SELECT * FROM (VALUES (1), (2), (7), (NULL)) t(user_id)\n",
    })
    defs = build_analytics_assets(load_project(root, external=EXTERNAL_MODELS))
    [model] = [d for d in defs if d.keys]
    [check] = [d for d in defs if not d.keys]
    assert model.key == dg.AssetKey(["staging", "ids"]) and not model.dependency_keys
    assert check.node_def.name == "staging__ids__relationships"
    [spec] = check.check_specs
    assert {d.asset_key for d in spec.additional_deps} == {dim_key("users")}
    data = tmp_path / "data"
    write_minimal_catalog(data / "catalog")  # user ids 0, 1, 2
    result = dg.materialize([*catalog_assets, *defs], resources=resources_for(data), instance=instance)
    assert result.success
    [ev] = [e for e in result.get_asset_check_evaluations() if e.asset_key == model.key]
    assert (ev.check_name, ev.passed, ev.metadata["failing_rows"].value) == ("relationships_user_id", False, 1)
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:  # that step loaded dims.users and nothing else (no raw relation: no version recorded)
        assert {r for (r,) in con.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                                          "WHERE table_schema IN ('raw', 'dims')").fetchall()} == {
            "dims.users", "raw._lake_versions"}
        assert con.execute("SELECT count(*) FROM raw._lake_versions").fetchall() == [(0,)]
    finally:
        con.close()


def test_two_files_that_would_share_a_key_are_refused(tmp_path):
    root = write(tmp_path / "dbt_like_models", {
        "staging/stg_x.sql": "/* ---\ndescription: d\n--- */\nSELECT 1 AS id\n",
        "staging/x.sql": "/* ---\ndescription: d\n--- */\nSELECT 2 AS id\n",
    })
    with pytest.raises(ValueError, match=r"stg_x.sql and .*x.sql would both be asset staging/x|"
                                         r"x.sql and .*stg_x.sql would both be asset staging/x"):
        build_analytics_assets(load_project(root, external=EXTERNAL_MODELS))
