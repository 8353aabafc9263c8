"""training_examples through a real Dagster instance: materialized after ingestion, idempotent."""

from __future__ import annotations

import dagster as dg

from tests.dagster.conftest import resources_for
from tests.ingest.conftest import dumps, write_landing
from tests.training.test_joiner import SCENARIO
from tiktok_pipelines.defs.ingest.assets import ingest_landing
from tiktok_pipelines.defs.resources import JoinerPolicy
from tiktok_pipelines.defs.training.assets import training_examples


def test_training_examples_materialize_and_rebuild_only_what_changed(tmp_path, instance) -> None:
    for stream, rows in SCENARIO.items():
        write_landing(tmp_path / "landing", stream, [dumps(r) for r in rows])
    resources = {**resources_for(tmp_path), "joiner_policy": JoinerPolicy(negative_rate=1.0)}
    result = dg.materialize([ingest_landing, training_examples], resources=resources, instance=instance)
    assert result.success
    meta = result.asset_materializations_for_node("training_examples")[0].metadata
    assert meta["dagster/row_count"].value == len(SCENARIO["impressions"])
    assert meta["dates_built"].value == {"2026-11-02": 6}

    again = dg.materialize([training_examples], resources=resources, instance=instance)
    meta = again.asset_materializations_for_node("training_examples")[0].metadata
    assert meta["dates_built"].value == {} and meta["dates_unchanged"].value == 1
    assert meta["dagster/row_count"].value == 6


def test_batch_retrain_registers_evaluates_promotes_and_publishes(tmp_path, instance) -> None:
    """Three simulated days: train on two, evaluate on the third; then again, where the new
    models meet the champions on the same day."""
    from tiktok_pipelines.defs.resources import TrainingPolicy
    from tiktok_pipelines.defs.training.assets import batch_rankers
    from tiktok_pipelines.serving.store import load_latest
    from tiktok_pipelines.simulator import simulate
    from tiktok_pipelines.training.registry import ModelRegistry

    simulate(tmp_path, seed=3, users=400, videos=800, days=3, events_per_day=40_000,
             start_date="2026-11-01", kuairec_dir=None, write_truth=False)
    resources = {**resources_for(tmp_path), "training_policy": TrainingPolicy(lgbm_rounds=40, torch_dim=8)}
    assets = [ingest_landing, training_examples, batch_rankers]
    result = dg.materialize(assets, resources=resources, instance=instance)
    assert result.success
    meta = result.asset_materializations_for_node("batch_rankers")[0].metadata
    assert meta["eval_day"].value == "2026-11-03"
    for name in ("lgbm_ranker", "torch_ranker"):
        # the simulator's reactions follow latent interests: a model that learned nothing scores 0.5
        assert meta[f"{name}/auc"].value > 0.55, (name, meta[f"{name}/auc"].value)
        assert meta[f"{name}/promoted"].value is True and meta[f"{name}/version"].value == 1
    registry = ModelRegistry(tmp_path / "models")
    card = registry.card("torch_ranker", 1)
    assert card["train_window"] == ["2026-11-01", "2026-11-02"] and card["metrics"]["examples"] > 1000
    # the new torch champion is what the serving directory now holds
    state = load_latest(tmp_path / "serving")
    assert state.seq == meta["serving_seq"].value and state.metadata["version"] == 1
    assert set(state.tables) == {"user_id", "video_id", "creator_id"} and len(state.tables["user_id"]) > 100

    again = dg.materialize([batch_rankers], resources=resources, instance=instance)
    meta2 = again.asset_materializations_for_node("batch_rankers")[0].metadata
    for name in ("lgbm_ranker", "torch_ranker"):
        assert meta2[f"{name}/version"].value == 2
        # the champion was scored on the same day; same data and seeds give the same LightGBM
        assert f"{name}/champion_auc_same_day" in meta2
    assert meta2["lgbm_ranker/champion_auc_same_day"].value == meta2["lgbm_ranker/auc"].value
    assert registry.champion("lgbm_ranker")["version"] == 2  # equal AUC is within the margin


def test_batch_retrain_skips_with_one_day(tmp_path, instance) -> None:
    from tiktok_pipelines.defs.training.assets import batch_rankers

    for stream, rows in SCENARIO.items():
        write_landing(tmp_path / "landing", stream, [dumps(r) for r in rows])
    result = dg.materialize([ingest_landing, training_examples, batch_rankers],
                            resources=resources_for(tmp_path), instance=instance)
    assert result.success
    assert not result.asset_materializations_for_node("batch_rankers")
