"""Lineage that tells the truth: in the code location's asset graph, every SQL model's upstream
assets are exactly the assets of the relations its SQL reads, under keys that fit the UI's node;
and the hourly job still builds the marts from the lake with no refresh step before them.

The expectation is read from the model files with a regex here, not from the loader under test."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from tests.dagster.conftest import instance, resources_for  # noqa: F401  (instance is a fixture)
from tests.dbt_like.test_dagster import _catalog
from tests.ingest.conftest import dumps, valid_record, write_landing
from tiktok_pipelines.defs.catalog.assets import catalog_assets
from tiktok_pipelines.defs.ingest.assets import ingest_landing
from tiktok_pipelines.schemas import STREAMS

ROOT = Path(__file__).resolve().parents[2] / "dbt_like_models"
LAYERS = ("staging", "intermediate", "marts")
PREFIX = {"staging": "stg_", "intermediate": "int_"}  # dropped from the key: the key starts with the layer
# What Python assets build that SQL may ref (defs/dbt_like/external.py), written out again here.
EXTERNAL = {
    "video_tags": dg.AssetKey("video_tags"),
    "user_features": dg.AssetKey("user_features"),
    "video_features": dg.AssetKey("video_features"),
    "creator_features": dg.AssetKey("creator_features"),
    "attribution_credits": dg.AssetKey(["marts", "attribution_credits"]),
    "attribution_journeys": dg.AssetKey(["marts", "attribution_journeys"]),
}
TAG = re.compile(r"\{\{\s*(ref|source)\s*\((.*?)\)\s*\}\}", re.S)
ARG = re.compile(r"""['"]([^'"]+)['"]""")
# The UI labels a node with its key's last part, cut in the middle past this many characters
# (dagster-webserver's ASSET_NODE_NAME_MAX_LENGTH; 18 when zoomed out).
LABEL_MAX = 31


def _key(layer: str, stem: str) -> dg.AssetKey:
    prefix = PREFIX.get(layer, "")
    return dg.AssetKey([layer, stem[len(prefix):] if prefix and stem.startswith(prefix) else stem])


def _files() -> dict[str, tuple[str, Path]]:
    """name -> (layer, path) of every model and seed file."""
    out = {p.stem: (layer, p) for layer in LAYERS for p in sorted((ROOT / layer).glob("*.sql"))}
    out |= {p.stem: ("seeds", p) for p in sorted((ROOT / "seeds").glob("*.csv"))}
    return out


def _source_asset(schema: str, table: str) -> dg.AssetKey:
    if schema == "dims":
        return dg.AssetKey(f"dim_{table}")
    assert schema == "raw", schema
    return dg.AssetKey(table if table in ("quarantine", "ingest_log") else f"raw_{table}")


def _reads(path: Path) -> tuple[set[str], set[tuple[str, str]]]:
    """(ref names, (schema, table) sources) in the SQL below the header."""
    text = path.read_text()
    body = text.split("--- */", 1)[1] if text.startswith("/* ---") else text
    refs, sources = set(), set()
    for kind, args in TAG.findall(body):
        names = ARG.findall(args)
        if kind == "ref":
            refs.add(names[0])
        else:
            sources.add((names[0], names[1]))
    return refs, sources


@pytest.fixture(scope="module")
def graph():
    from tiktok_pipelines.definitions import defs as load_defs

    return load_defs().resolve_asset_graph()


def test_every_sql_model_depends_on_exactly_the_relations_its_sql_reads(graph):
    files = _files()
    models = {name: (layer, path) for name, (layer, path) in files.items() if layer in LAYERS}
    assert len(models) >= 25
    keys = graph.get_all_asset_keys()
    read_sources = set()
    for name, (layer, path) in models.items():
        refs, sources = _reads(path)
        assert refs or sources, path
        want = {_key(files[r][0], r) if r in files else EXTERNAL[r] for r in refs}
        want |= {_source_asset(*s) for s in sources}
        key = _key(layer, name)
        node = graph.get(key)
        assert node.parent_keys == want, f"{path.name}: {sorted(k.to_user_string() for k in node.parent_keys)}"
        # every upstream is a real asset of the location (a wrong key would be a stub, drawn as external)
        assert want <= keys and all(graph.get(k).is_materializable for k in want), path.name
        # the relation analysts query keeps the file's name
        assert node.metadata["relation"] == f"{layer}.{name}"
        read_sources |= sources
    # staging reads the lake: the graph shows which stream each one comes from
    assert graph.get(dg.AssetKey(["staging", "views"])).parent_keys == {dg.AssetKey("raw_views")}
    assert graph.get(dg.AssetKey(["staging", "users"])).parent_keys == {dg.AssetKey("dim_users")}
    assert {("raw", s) for s in STREAMS} <= read_sources
    # No SQL model hangs off the refresh-everything asset any more.
    lake = dg.AssetKey("warehouse_lake_tables")
    assert not [k for k in graph.get(lake).child_keys if k.path[0] in LAYERS and k.path[-1] not in EXTERNAL]


def test_model_keys_fit_the_node_and_no_old_key_is_left(graph):
    groups = {}
    for key in graph.get_all_asset_keys():
        groups.setdefault(graph.get(key).group_name, set()).add(key)
    for layer in (*LAYERS, "seeds"):
        for key in groups[layer]:
            assert key.path[0] == layer and len(key.path) == 2
            label = key.path[-1]
            assert not label.startswith(("stg_", "int_")), key
            assert len(label) <= LABEL_MAX, key
    assert {dg.AssetKey(["staging", s]) for s in STREAMS} <= groups["staging"]
    assert dg.AssetKey(["intermediate", "creator_views_daily"]) in groups["intermediate"]
    assert dg.AssetKey(["staging", "stg_views"]) not in graph.get_all_asset_keys()


@pytest.mark.slow  # one run of ~30 steps through a real instance
def test_hourly_job_builds_the_marts_from_the_lake(tmp_path, monkeypatch, instance):  # noqa: F811
    data = tmp_path / "data"
    for stream, schema in STREAMS.items():
        write_landing(data / "landing", stream, [dumps(valid_record(schema, i)) for i in range(3)])
    _catalog(data / "catalog")
    assert dg.materialize([ingest_landing, *catalog_assets], resources=resources_for(data),
                          instance=instance).success
    monkeypatch.setenv("TIKTOK_DATA_DIR", str(data))  # the location's resources read it when loaded
    from tiktok_pipelines.definitions import defs as load_defs

    defs = load_defs()
    job = defs.resolve_job_def("hourly_analytics_job")
    graph = defs.resolve_asset_graph()
    in_job = set(job.asset_layer.selected_asset_keys)
    # The SQL marts whose inputs are all in the job or in the lake (not the ones that read
    # video_tags or the features, Python assets with their own cadence), with what they need.
    sql_marts = {_key("marts", p.stem) for p in (ROOT / "marts").glob("*.sql")}
    lake = {k for k in graph.get_all_asset_keys()
            if graph.get(k).group_name in ("ingest", "catalog") or not graph.get(k).is_materializable}
    marts = {m for m in sql_marts if (graph.get_ancestor_asset_keys(m) - in_job) <= lake}
    assert {dg.AssetKey(["marts", "creator_daily"]), dg.AssetKey(["marts", "ad_performance_daily"])} <= marts
    subset = set().union(*({m} | (graph.get_ancestor_asset_keys(m) & in_job) for m in marts))
    assert dg.AssetKey("warehouse_lake_tables") not in subset  # nothing refreshes raw.* before staging

    result = job.execute_in_process(instance=instance, asset_selection=sorted(subset, key=str))
    assert result.success
    built = {m.asset_key for m in result.get_asset_materialization_events()}
    assert subset == built
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        for m in marts:  # each one is there (a view or a table), built from the lake's rows
            con.execute(f"SELECT count(*) FROM marts.{m.path[-1]}").fetchall()
        assert con.execute("SELECT sum(views) FROM marts.creator_daily").fetchall() == [(3,)]
        # each staging step refreshed the lake relations it reads, and only those
        read = {r for (r,) in con.execute("SELECT relation FROM raw._lake_versions").fetchall()}
        staged = set()
        for k in subset:
            if k.path[0] == "staging":
                staged |= {f"{s}.{t}" for s, t in _reads(ROOT / "staging" / f"stg_{k.path[1]}.sql")[1]}
        assert read == {r for r in staged if r.startswith("raw.")}
        assert "raw.views" in read and "raw.quarantine" not in read
        assert con.execute("SELECT count(*) FROM staging.stg_views").fetchall() == [(3,)]
    finally:
        con.close()
