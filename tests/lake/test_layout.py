"""layout.py names the data folder's parts and the lake's tables once; what uses them agrees."""

from __future__ import annotations

from pathlib import Path

from tiktok_pipelines import layout
from tiktok_pipelines.defs.resources import PlatformStorage
from tiktok_pipelines.features.daily import feature_table
from tiktok_pipelines.ingest import engine
from tiktok_pipelines.simulator import simulate


def test_the_lake_tables_are_the_layouts():
    # The engine's names are the layout's own (re-exported for its importers), not copies.
    for name in ("EVENTS_DIR", "QUARANTINE_DIR", "INGEST_LOG_DIR", "STATE_TABLE", "STAGING_DIR", "events_table"):
        assert getattr(engine, name) is getattr(layout, name), name
    assert engine.events_table("views") == "events/views"
    assert feature_table("user") == f"{layout.FEATURES_DIR}/user"


def test_platform_storage_and_simulator_use_the_data_layout(tmp_path):
    d = layout.DataLayout(tmp_path)
    s = PlatformStorage(data_dir=str(tmp_path))
    assert (s.landing, s.lake, s.catalog, s.warehouse, s.analytics, s.models, s.serving) == (
        d.landing, d.lake, d.catalog, d.warehouse, d.analytics, d.models, d.serving)
    assert layout.DataLayout(str(tmp_path)).root == Path(tmp_path)
    simulate(tmp_path, seed=2, users=40, videos=60, days=1, events_per_day=800, kuairec_dir=None)
    assert {p.name for p in tmp_path.iterdir()} == {layout.LANDING, layout.CATALOG, layout.TRUTH}
    assert any(d.landing.rglob("*.ndjson")) and (d.catalog / "videos.parquet").is_file()
    assert (d.truth / "runs.json").is_file()
