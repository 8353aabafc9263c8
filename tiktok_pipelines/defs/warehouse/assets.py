"""The warehouse (DuckDB) and the analysts' database, both behind one writer pool."""


import dagster as dg

from tiktok_pipelines.defs.catalog.assets import catalog_assets
from tiktok_pipelines.defs.ingest.assets import INGEST_LOG_KEY, QUARANTINE_KEY, raw_key
from tiktok_pipelines.defs.ops.policies import (
    ANALYTICS_FRESHNESS,
    TRANSIENT_RETRY,
    retry_only_transient,
)
from tiktok_pipelines.defs.resources import PlatformStorage
from tiktok_pipelines.schemas import CATALOG, STREAMS
from tiktok_pipelines.warehouse import (
    RelationDoc,
    publish_analytics,
    refresh_lake_views,
)

GROUP = "warehouse"
# Every asset that opens warehouse.duckdb for writing runs in this pool; the instance gives it one
# slot (dagster.yaml: concurrency.pools), so two writers never meet.
WAREHOUSE_POOL = "duckdb_warehouse"


@dg.asset(
    group_name=GROUP,
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    deps=[raw_key(s) for s in STREAMS] + [QUARANTINE_KEY, INGEST_LOG_KEY] + [a.key for a in catalog_assets],
    description="raw.* over the lake's Delta tables at their committed versions (recorded in raw._lake_versions) "
    "and dims.* tables loaded from the catalog's Delta tables (dims/<name>) in warehouse.duckdb.",
    retry_policy=TRANSIENT_RETRY,  # a DuckDB lock held outside Dagster's pool: retried with backoff
)
@retry_only_transient
def warehouse_lake_tables(storage: PlatformStorage) -> dg.MaterializeResult:
    with storage.warehouse_db.connect() as con:
        counts = refresh_lake_views(con, storage.lake_location, storage.lake_store)
        con.execute("CHECKPOINT")
    table = "| relation | rows |\n|---|---|\n" + "\n".join(f"| {k} | {v:,} |" for k, v in counts.items())
    return dg.MaterializeResult(
        metadata={
            "relations": dg.MetadataValue.md(table),
            "dagster/row_count": sum(v for k, v in counts.items() if k.startswith("raw.")),
            "path": dg.MetadataValue.path(str(storage.warehouse)),
        }
    )


def _relation_key(project, name: str) -> dg.AssetKey:
    """The asset key of a model, seed or Python-built relation: ``defs.dbt_like.assets.model_key``'s
    rule, from ``external.py`` (the dbt_like defs import this module, so ``model_key`` cannot be
    imported here; tests/dagster/test_analytics_portable.py checks both agree on every name)."""
    from tiktok_pipelines.defs.dbt_like.external import model_asset_key

    if name in project.external:
        return project.external[name][0]
    node = project.node(name)
    return model_asset_key(node.layer, node.name)


def published_sinks() -> list[dg.AssetKey]:
    """What analytics_db waits for: the warehouse writers nothing else in the warehouse reads.

    Computed from the model files and the external-model table (not from the analytics defs, which
    import this module): every seed, model and Python-built relation (video_tags, features,
    attribution) that no SQL model ``ref``s. Every other writer is upstream of one of them, so the
    copy is still taken after all of it (a test checks that every SQL model is an ancestor of
    analytics_db), and the graph draws analytics_db as the sink it is instead of with an edge from
    every relation. A new SQL model is published without touching this list.

    Plus ``warehouse_lake_tables`` itself, though the models are downstream of it: the copy's
    raw.*/dims.* are what it wrote, and a run of a subset (the lake refresh and the publication,
    as a one-click "materialize selected" or a test) must still order the two."""
    from tiktok_pipelines.defs.dbt_like.external import EXTERNAL_MODELS, load_models

    project = load_models()
    refd = {r for m in project.models.values() for r in m.refs}
    names = [*sorted(project.seeds), *sorted(project.models), *sorted(EXTERNAL_MODELS)]
    keys = [warehouse_lake_tables.key] + [_relation_key(project, n) for n in names if n not in refd]
    return list(dict.fromkeys(keys))


def analytics_docs() -> dict[str, RelationDoc]:
    """``schema.name`` -> (description, {column: description}) for ``COMMENT ON`` in the analysts'
    copy, from the sources the docs come from: the SQL models' YAML headers (what
    docs/data_dictionary.md is generated from), the event contract (``raw.<stream>``, as the
    lake assets' column tables show it), the catalog's table docs (``dims.*``), the tagger's
    columns (``content.video_tags``) and the attribution marts' columns (docs/attribution.md)."""
    from tiktok_pipelines.defs.dbt_like.external import load_models
    from tiktok_pipelines.defs.ingest.assets import _column_schema
    from tiktok_pipelines.defs.tagging.assets import _COLUMN_DOCS as TAG_COLUMNS
    from tiktok_pipelines.defs.tagging.assets import TABLE as TAGS_TABLE

    project = load_models()
    docs: dict[str, RelationDoc] = {}
    for stream in STREAMS:
        cols = {c.name: c.description for c in _column_schema(stream).columns if c.description}
        docs[f"raw.{stream}"] = (f"The lake's events/{stream} table at the committed version recorded in "
                                 "raw._lake_versions (as of the last warehouse refresh).", cols)
    for name, table in CATALOG.items():
        docs[f"dims.{name}"] = (table.doc, {})
    docs[TAGS_TABLE] = ("Tags, category and confidence per video (video_tags).", TAG_COLUMNS)
    docs.update(ATTRIBUTION_DOCS)
    for m in project.models.values():
        docs[m.relation] = (m.description, {c.name: c.description for c in m.columns.values()})
    return docs


# The attribution marts' columns (built in Python by defs/attribution; docs/attribution.md, "The marts").
ATTRIBUTION_DOCS: dict[str, RelationDoc] = {
    "marts.attribution_journeys": ("One row per ad conversion and its journey of ad touches (attributed or not).", {
        "conversion_id": "The conversion (raw.ad_events event_id).",
        "user_id": "The converting user.",
        "advertiser_id": "The advertiser; journeys are per (user, advertiser).",
        "reported_campaign_id": "The campaign the conversion pixel reported.",
        "conversion_type": "The conversion's type as reported (raw.ad_events conversion_type).",
        "ts": "When the conversion happened (UTC).",
        "day": "UTC date of the conversion.",
        "value_cents": "Purchase value of the conversion, in cents.",
        "attributed": "Whether any touch earned it (a click in the click window or a view in the view window).",
        "touch_type": "click, view, or NULL when unattributed: what kind of touch earned it.",
        "touches": "Number of touches in the journey (0 when unattributed).",
        "channels": "The touches' channels (placements), in time order.",
        "campaigns": "The touches' campaigns, in time order.",
        "path": "The channels joined with ' > ' (e.g. 'search > feed').",
        "first_touch_ts": "Time of the journey's first touch (UTC); NULL when unattributed.",
        "last_touch_ts": "Time of the journey's last touch (UTC); NULL when unattributed.",
    }),
    "marts.attribution_credits": ("Credited conversions and value per attribution model, channel, campaign "
                                  "and conversion day.", {
        "model": "Attribution model: first_click, last_click, linear, position_based, time_decay, markov, shapley.",
        "channel": "The touch channel (ad placement).",
        "campaign_id": "The touched campaign credited.",
        "day": "UTC date of the conversion.",
        "credited_conversions": "Conversions credited (fractional).",
        "credited_value_cents": "Purchase value credited, in cents (fractional).",
    }),
}


@dg.asset(
    group_name=GROUP,
    pool=WAREHOUSE_POOL,
    kinds={"duckdb"},
    deps=published_sinks(),
    description="analytics.duckdb: the read-only copy analysts query, swapped in atomically after the "
    "warehouse's tables, SQL models, tags, attribution and features are built (its edges: the writers "
    "nothing else reads; everything else is upstream of them). Views name the lake's files relative "
    "to its folder; columns carry the data dictionary's comments.",
    retry_policy=TRANSIENT_RETRY,
    freshness_policy=ANALYTICS_FRESHNESS,  # what analysts read: refreshed hourly (hourly_analytics_job)
)
@retry_only_transient
def analytics_db(storage: PlatformStorage) -> dg.MaterializeResult:
    size = publish_analytics(storage.warehouse, storage.analytics, analytics_docs())
    return dg.MaterializeResult(
        metadata={"bytes": size, "path": dg.MetadataValue.path(str(storage.analytics))}
    )
