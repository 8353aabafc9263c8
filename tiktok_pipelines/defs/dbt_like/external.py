"""Where the SQL models live, their asset keys, and the relations Python assets build that SQL
models may ``ref``.

``{{ ref('video_tags') }}`` in a model renders as ``content.video_tags`` and makes the model's asset
depend on the ``video_tags`` asset, so lineage runs through Python and SQL alike.
"""

from pathlib import Path

import dagster as dg

from tiktok_pipelines.dbt_like import Project, load_project
from tiktok_pipelines.defs.resources import DbtLikeProject, from_environment

# ref name -> (the Python asset that builds it, its relation in warehouse.duckdb)
EXTERNAL_MODELS: dict[str, tuple[dg.AssetKey, str]] = {
    "video_tags": (dg.AssetKey("video_tags"), "content.video_tags"),
    "user_features": (dg.AssetKey("user_features"), "features.user_daily"),
    "video_features": (dg.AssetKey("video_features"), "features.video_daily"),
    "creator_features": (dg.AssetKey("creator_features"), "features.creator_daily"),
    "attribution_credits": (dg.AssetKey(["marts", "attribution_credits"]), "marts.attribution_credits"),
    "attribution_journeys": (dg.AssetKey(["marts", "attribution_journeys"]), "marts.attribution_journeys"),
}


# A model's key drops its file's layer prefix: the key already starts with the layer, and the UI
# labels a node with the key's last part only, cut in the middle past 18 characters in the zoomed-out
# graph ("int_c…_views_daily") and past 31 in the full node. The relation keeps the file's name
# (analysts query intermediate.int_creator_views_daily).
LAYER_PREFIXES = {"staging": "stg_", "intermediate": "int_"}


def model_asset_key(layer: str, name: str) -> dg.AssetKey:
    """The asset key of SQL model ``name`` in ``layer`` (or of seed ``name`` with layer "seeds"):
    ``["staging", "views"]`` for ``stg_views``, ``["intermediate", "creator_views_daily"]`` for
    ``int_creator_views_daily``, ``["marts", "creator_daily"]``, ``["seeds", "revenue_shares"]``.
    A name without its layer's prefix (or that is only the prefix) keeps its name."""
    prefix = LAYER_PREFIXES.get(layer)
    if prefix and name.lower().startswith(prefix) and len(name) > len(prefix):
        name = name[len(prefix):]
    return dg.AssetKey([layer, name])


def dbt_like_project() -> DbtLikeProject:
    """The ``dbt_like`` resource as the environment has it now (the models become assets: read
    when the code location loads)."""
    return from_environment(DbtLikeProject, "dbt_like")


def models_dir() -> Path:
    """``$TIKTOK_MODELS_DIR``, else ``dbt_like_models/`` (the repository's, or the installed package's)."""
    return dbt_like_project().models_path


def load_models(root: Path | None = None) -> Project:
    return load_project(root or models_dir(), external=EXTERNAL_MODELS)
