from __future__ import annotations

from pathlib import Path

import pytest

EXTERNAL = {"video_tags": ("VIDEO_TAGS_KEY", "content.video_tags")}


def header(description: str = "A test model.", materialized: str = "view", extra: str = "") -> str:
    """A minimal valid header; ``extra`` is more YAML (already indented for the top level)."""
    return f"/* ---\nmaterialized: {materialized}\ndescription: {description}\n{extra}--- */\n"


def write(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text) under ``root`` (a folder named dbt_like_models)."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    root = tmp_path / "dbt_like_models"
    root.mkdir()
    return root
