"""Where the SQL models live, and the relations Python assets build that SQL models may ``ref``.

``{{ ref('video_tags') }}`` in a model renders as ``content.video_tags`` and makes the model's asset
depend on the ``video_tags`` asset, so lineage runs through Python and SQL alike.
"""

import os
from pathlib import Path

import dagster as dg

from tiktok_pipelines.dbt_like import Project, load_project

# ref name -> (the Python asset that builds it, its relation in warehouse.duckdb)
EXTERNAL_MODELS: dict[str, tuple[dg.AssetKey, str]] = {
    "video_tags": (dg.AssetKey("video_tags"), "content.video_tags"),
    "user_features": (dg.AssetKey("user_features"), "features.user_daily"),
    "video_features": (dg.AssetKey("video_features"), "features.video_daily"),
    "creator_features": (dg.AssetKey("creator_features"), "features.creator_daily"),
    "attribution_credits": (dg.AssetKey(["marts", "attribution_credits"]), "marts.attribution_credits"),
    "attribution_journeys": (dg.AssetKey(["marts", "attribution_journeys"]), "marts.attribution_journeys"),
}


def models_dir() -> Path:
    """``dbt_like_models/`` at the repository root, or ``$TIKTOK_MODELS_DIR``."""
    env = os.environ.get("TIKTOK_MODELS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "dbt_like_models"


def load_models(root: Path | None = None) -> Project:
    return load_project(root or models_dir(), external=EXTERNAL_MODELS)
