"""``video_tags`` through a real Dagster instance, on tiny catalogs (hand-written, generated, KuaiRec)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from tests.tagging.test_classifier import synthetic
from tiktok_pipelines.defs.catalog.assets import catalog_assets, dim_key
from tiktok_pipelines.defs.resources import PlatformStorage
from tiktok_pipelines.defs.tagging.assets import video_tags
from tiktok_pipelines.schemas import CATALOG

KUAIREC = Path(__file__).resolve().parents[3] / "shared" / "data" / "kuairec"
DIM_VIDEOS = next(a for a in catalog_assets if a.key == dim_key("videos"))


@pytest.fixture
def instance():
    with dg.instance_for_test(overrides={"concurrency": {"pools": {"default_limit": 1}}}) as inst:
        yield inst


def write_videos(catalog: Path, captions, hashtags, categories, source="generated") -> None:
    n = len(captions)
    df = pl.DataFrame({
        "video_id": list(range(1, n + 1)), "creator_id": [1] * n, "caption": captions, "hashtags": hashtags,
        "category": categories, "duration_ms": [15_000] * n, "language": ["zh"] * n,
        "published_at_ms": [0] * n, "source": [source] * n, "source_video_id": [None] * n,
    }, schema={"video_id": pl.Int64, "creator_id": pl.Int64, "caption": pl.String, "hashtags": pl.List(pl.String),
               "category": pl.String, "duration_ms": pl.Int64, "language": pl.String, "published_at_ms": pl.Int64,
               "source": pl.String, "source_video_id": pl.Int64})
    assert set(df.columns) == set(CATALOG["videos"].columns)
    catalog.mkdir(parents=True, exist_ok=True)
    df.write_parquet(catalog / "videos.parquet")


def _materialize(tmp_path, instance, config=None):
    storage = PlatformStorage(data_dir=str(tmp_path))
    run_config = {"ops": {"video_tags": {"config": config}}} if config else None
    result = dg.materialize([DIM_VIDEOS, video_tags], resources={"storage": storage}, instance=instance,
                            run_config=run_config)
    assert result.success
    return storage, result.asset_materializations_for_node("video_tags")[0].metadata


def _table(storage) -> tuple[list, pl.DataFrame]:
    con = duckdb.connect(str(storage.warehouse), read_only=True)
    try:
        types = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_schema = 'content' AND table_name = 'video_tags' ORDER BY ordinal_position").fetchall()
        rows = con.sql("SELECT * FROM content.video_tags ORDER BY video_id").pl()
    finally:
        con.close()
    return types, rows


def test_tags_a_labelled_catalog_and_predicts_the_rest(tmp_path, instance) -> None:
    caps, tags, labels = synthetic(30, seed=21)
    caps += ["周末去试驾了一台supercar", "我家猫咪 kitten 太可爱", "……"]
    tags += [["#cartok"], [], []]
    labels += [None, None, None]  # unlabelled: the classifier decides
    write_videos(tmp_path / "catalog", caps, tags, labels)
    storage, meta = _materialize(tmp_path, instance)

    types, rows = _table(storage)
    assert types == [("video_id", "BIGINT"), ("tags", "VARCHAR[]"), ("category", "VARCHAR"),
                     ("confidence", "DOUBLE"), ("method", "VARCHAR")]
    assert rows.height == len(caps) == meta["dagster/row_count"].value
    lake_table = pl.read_delta(storage.lake_store.uri("content/video_tags"))  # the Delta table, as any reader
    assert lake_table.sort("video_id").equals(rows)
    assert meta["table_version"].value == storage.lake_store.version("content/video_tags")
    manual = rows.filter(pl.col("method") == "manual")
    assert manual.height == 150 and manual["category"].to_list() == labels[:150]
    assert (manual["confidence"] == 1.0).all()
    pred = rows.filter(pl.col("method") == "classifier")
    assert pred["category"].to_list()[:2] == ["汽车", "宠物"]
    assert pred["confidence"].is_between(0.2, 1.0).all()
    assert pred["tags"].to_list()[0][0] == "cartok"  # normalised hashtags first, then taxonomy terms
    assert "猫咪" in pred["tags"].to_list()[1]

    assert meta["heldout/accuracy"].value > 0.9 > meta["heldout/majority_accuracy"].value
    assert meta["heldout/test_videos"].value + meta["heldout/train_videos"].value == 150
    assert meta["methods"].value == {"manual": 150, "classifier": 3}
    assert "| 汽车 |" in meta["category_distribution"].value
    assert (storage.models / "video_tagger" / "manifest.json").exists()

    # again, classifier everywhere: same table, replaced whole
    storage, meta = _materialize(tmp_path, instance, {"prefer_catalog_labels": False})
    _, rows2 = _table(storage)
    assert rows2.height == rows.height and set(rows2["method"]) == {"classifier"}
    assert (rows2["category"] == pl.Series(labels[:150] + [None] * 3)).sum() >= 140
    # the lake's table was replaced whole, in one commit: it holds the second run's rows only
    assert meta["table_version"].value == storage.lake_store.version("content/video_tags")
    assert pl.read_delta(storage.lake_store.uri("content/video_tags")).sort("video_id").equals(rows2)
    assert len(storage.lake_store.files("content/video_tags")) == 1


def test_without_labels_the_rules_decide(tmp_path, instance) -> None:
    write_videos(tmp_path / "catalog", ["好吃的火锅 #美食", "my puppy", "嗯"], [["美食"], [], []], [None] * 3)
    storage, meta = _materialize(tmp_path, instance)
    _, rows = _table(storage)
    assert rows["category"].to_list() == ["美食", "宠物", None]
    assert rows["method"].to_list() == ["rules", "rules", "none"]
    assert rows["confidence"].null_count() == 3
    assert "heldout/accuracy" not in meta and "model" not in meta


def _world_catalog(tmp_path, kuairec) -> None:
    from tiktok_pipelines.simulator.world import build_world

    w = build_world(seed=5, users=200, videos=600, start_date=dt.date(2026, 11, 1), kuairec_dir=kuairec)
    (tmp_path / "catalog").mkdir(parents=True)
    w.catalog_videos().write_parquet(tmp_path / "catalog" / "videos.parquet")


def test_generated_fallback_catalog(tmp_path, instance) -> None:
    _world_catalog(tmp_path, None)
    storage, meta = _materialize(tmp_path, instance)
    _, rows = _table(storage)
    assert rows.height == 600 and rows["category"].null_count() == 0
    # the fallback's captions carry their category's keywords: both learner and rules do well
    assert meta["heldout/accuracy"].value > 0.8 and meta["heldout/rules_accuracy"].value > 0.8
    assert set(rows["category"]) <= {"food", "travel", "gaming", "music", "dance", "comedy", "beauty", "fashion",
                                     "sports", "pets", "education", "tech", "diy", "fitness", "cars", "family",
                                     "news", "art"}


@pytest.mark.skipif(not (KUAIREC / "video_captions.csv").exists(), reason="no KuaiRec data at ../shared/data/kuairec")
def test_kuairec_backed_catalog(tmp_path, instance) -> None:
    _world_catalog(tmp_path, KUAIREC)
    storage, meta = _materialize(tmp_path, instance)
    _, rows = _table(storage)
    assert rows.height == 600
    assert meta["heldout/accuracy"].value > meta["heldout/majority_accuracy"].value
    assert rows.filter(pl.col("method") == "manual")["category"].str.contains(r"[\u4e00-\u9fff]").all()
