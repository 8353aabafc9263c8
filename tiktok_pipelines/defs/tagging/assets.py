"""``video_tags``: tags, category and confidence for every video of the catalog.

Reads the validated catalog snapshot ``dim_videos`` publishes (the lake's Delta table
``dims/videos``; the raw export ``catalog/videos.parquet`` if that has not run yet), so it needs
the warehouse only to write. Trains the content classifier on the videos that carry a category
label, tags every video (``tiktok_pipelines/tagging/pipeline.py``), and replaces the lake's Delta
table ``content/video_tags`` whole, in one transaction (local disk or the bucket
``PlatformStorage.lake_uri`` names), then loads that committed version into ``content.video_tags``
in warehouse.duckdb (pool ``duckdb_warehouse``). The held-out accuracy and macro-F1, beside the
majority-class and rules baselines, are metadata of every materialization. Definitions:
``docs/tagging.md``.
"""


import dagster as dg
import duckdb
import polars as pl

from tiktok_pipelines.defs.catalog.assets import dim_key
from tiktok_pipelines.defs.ops.policies import TRANSIENT_RETRY, retry_only_transient
from tiktok_pipelines.defs.resources import PlatformStorage
from tiktok_pipelines.defs.warehouse.assets import WAREHOUSE_POOL
from tiktok_pipelines.dims import read_dim
from tiktok_pipelines.tagging.pipeline import tag_videos

GROUP = "content"
TABLE = "content.video_tags"
LAKE_TABLE = "content/video_tags"  # the Delta table under the lake root
COLUMNS = {"video_id": "BIGINT", "tags": "VARCHAR[]", "category": "VARCHAR", "confidence": "DOUBLE", "method": "VARCHAR"}
_COLUMN_DOCS = {
    "video_id": "The video (dims.videos.video_id).",
    "tags": "Normalised hashtags (NFKC, case-folded, '#' stripped) from the catalog and the caption, then taxonomy terms found.",
    "category": "First-level category: the catalog's label where it has one, else the classifier's.",
    "confidence": "1 for a catalog label; the classifier's calibrated probability; NULL for rules.",
    "method": "manual | classifier | rules | none.",
}


class VideoTagsConfig(dg.Config):
    prefer_catalog_labels: bool = True  # False: the classifier's category for every video
    test_fraction: float = 0.2  # held-out share of labelled videos (split by video id)
    max_train_videos: int = 50_000  # cap on labelled videos fitted (chosen by id hash)


_VIDEO_COLUMNS = ["video_id", "caption", "hashtags", "category", "source", "source_video_id"]


def _read_videos(storage: PlatformStorage) -> pl.DataFrame:
    """The videos of ``dims/videos`` at its newest version; the raw export while dim_videos has not
    published it."""
    published = read_dim(storage.lake_store, "videos", _VIDEO_COLUMNS)
    if published is not None:
        return pl.from_arrow(published)
    src = storage.catalog / "videos.parquet"
    if not src.exists():
        raise FileNotFoundError(f"no videos catalog at {src}: materialize dim_videos (or run `tiktok-pipelines simulate`)")
    present = pl.read_parquet_schema(src)
    return pl.read_parquet(src, columns=[c for c in _VIDEO_COLUMNS if c in present])


@dg.asset(
    key="video_tags",
    group_name=GROUP,
    pool=WAREHOUSE_POOL,
    kinds={"python", "duckdb", "deltalake"},
    deps=[dim_key("videos")],
    description="Per video: normalised tags, first-level category and its confidence, and how it was "
    "decided (catalog label, classifier over caption/hashtag character n-grams, or taxonomy rules).",
    metadata={
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(c, t, description=_COLUMN_DOCS[c]) for c, t in COLUMNS.items()]
        ),
        "dagster/table_name": TABLE,
    },
    retry_policy=TRANSIENT_RETRY,
    # Re-tag when the catalog (dim_videos) changes, evaluated by automation_sensor (defs/ops): the
    # hourly analytics job reads the last content.video_tags rather than re-training each hour.
    automation_condition=dg.AutomationCondition.eager(),
)
@retry_only_transient
def video_tags(context: dg.AssetExecutionContext, config: VideoTagsConfig,
               storage: PlatformStorage) -> dg.MaterializeResult:
    videos = _read_videos(storage)
    result = tag_videos(videos, prefer_labels=config.prefer_catalog_labels, test_fraction=config.test_fraction,
                        max_train_videos=config.max_train_videos)
    select = ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in COLUMNS.items())
    con = duckdb.connect()
    try:
        con.register("tags", result.tags.to_arrow())
        tags = con.sql(f"SELECT {select} FROM tags").to_arrow_table()  # the table's types, as the warehouse's
    finally:
        con.close()
    store = storage.lake_store
    version = store.replace(LAKE_TABLE, tags)
    if result.model is not None:
        result.model.save_atomic(storage.models / "video_tagger")

    with storage.warehouse_db.connect() as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS content")
        con.register("_video_tags", store.dataset(LAKE_TABLE, version))  # the version just committed
        try:
            con.execute(f"CREATE OR REPLACE TABLE {TABLE} AS SELECT {select} FROM _video_tags")
        finally:
            con.unregister("_video_tags")
        rows = con.execute(f"SELECT count(*) FROM {TABLE}").fetchall()[0][0]
        con.execute("CHECKPOINT")
    return dg.MaterializeResult(metadata=_metadata(context, storage, result.metrics, rows, version))


def _metadata(context: dg.AssetExecutionContext, storage: PlatformStorage, m: dict, rows: int, version: int) -> dict:
    """What the UI shows of a tagging run: the table, how videos were tagged, the held-out scores."""
    dist = m.get("category_distribution", {})
    table = "| category | videos |\n|---|---|\n" + "\n".join(f"| {c} | {n:,} |" for c, n in dist.items())
    meta: dict = {
        "dagster/row_count": rows,
        "path": dg.MetadataValue.path(storage.lake_store.uri(LAKE_TABLE)),
        "table_version": version,
        "labelled_videos": m["labelled_videos"],
        "methods": dg.MetadataValue.json(m["methods"]),
        "category_distribution": dg.MetadataValue.md(table),
    }
    if "model" in m:
        meta["model"] = m["model"]
        meta["model_path"] = dg.MetadataValue.path(str(storage.models / "video_tagger"))
    if m.get("evaluated"):
        for k in ("accuracy", "macro_f1", "majority_accuracy", "rules_accuracy", "rules_macro_f1"):
            meta[f"heldout/{k}"] = float(m[k])
        meta["heldout/train_videos"] = m["train_videos"]
        meta["heldout/test_videos"] = m["test_videos"]
        meta["heldout/train_seconds"] = m["train_seconds"]
        context.log.info(
            f"held-out accuracy {m['accuracy']:.3f} (majority {m['majority_accuracy']:.3f}, rules "
            f"{m['rules_accuracy']:.3f}), macro-F1 {m['macro_f1']:.3f} on {m['test_videos']} videos"
        )
    elif "reason" in m:
        meta["heldout/skipped"] = m["reason"]
    return meta
