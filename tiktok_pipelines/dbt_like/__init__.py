"""dbt-like SQL models: parse, validate, build and test ``dbt_like_models/`` in DuckDB (no Dagster).

    from tiktok_pipelines.dbt_like import load_project
    project = load_project(Path("dbt_like_models"), external={"video_tags": (key, "content.video_tags")})
    project.build(con); results = project.test(con); markdown = project.data_dictionary()
"""

from tiktok_pipelines.dbt_like.parse import ModelError, is_identifier
from tiktok_pipelines.dbt_like.project import (
    LAYER_RULE,
    LAYERS,
    BuildError,
    BuildResult,
    Column,
    ColumnTest,
    Model,
    Project,
    Seed,
    TestResult,
    default_sources,
    load_project,
)

__all__ = [
    "LAYERS", "LAYER_RULE", "BuildError", "BuildResult", "Column", "ColumnTest", "Model", "ModelError",
    "Project", "Seed", "TestResult", "default_sources", "is_identifier", "load_project",
]
