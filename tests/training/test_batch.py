"""The daily batch retrain without Dagster: ``retrain_and_promote`` on a small simulated lake."""

from __future__ import annotations

import json
import logging

import pytest

from tiktok_pipelines.training.batch import BatchSettings, retrain_and_promote

SETTINGS = BatchSettings(negative_rate=1.0, lgbm_rounds=20, torch_dim=8, torch_admit_min_count=2,
                         torch_batch_size=1024, promotion_margin_auc=0.002, keep_full_snapshots=3)


@pytest.fixture(scope="module")
def three_days(tmp_path_factory):
    """Three simulated days, ingested and joined: two to train on, the third to evaluate on."""
    from tiktok_pipelines.ingest.engine import ingest_files
    from tiktok_pipelines.ingest.landing import list_landing_files
    from tiktok_pipelines.simulator import simulate
    from tiktok_pipelines.training.joiner import JoinerConfig, build_examples

    root = tmp_path_factory.mktemp("batch")
    simulate(root, seed=5, users=200, videos=400, days=3, events_per_day=8_000, start_date="2026-11-01",
             kuairec_dir=None, write_truth=False)
    ingest_files(list_landing_files(root / "landing"), landing_root=root / "landing", lake_root=root / "lake")
    build_examples(root / "lake", JoinerConfig(negative_rate=1.0))
    return root


def test_first_retrain_registers_promotes_and_publishes(tmp_path, three_days) -> None:
    from tiktok_pipelines.serving.store import load_latest
    from tiktok_pipelines.training.registry import ModelRegistry

    report = retrain_and_promote(three_days / "lake", tmp_path / "models", tmp_path / "serving", SETTINGS)
    assert report.skipped is None
    assert report.eval_day == "2026-11-03" and report.train_days == 2 and report.torch_epochs >= 1
    assert set(report.models) == {"lgbm_ranker", "torch_ranker"}
    for name, m in report.models.items():
        # no champion yet: each challenger is version 1 and wins
        assert (m.version, m.promoted, m.champion_auc) == (1, True, None), name
        assert 0.0 <= m.metrics["auc"] <= 1.0 and m.metrics["log_loss"] > 0
    registry = ModelRegistry(tmp_path / "models")
    assert registry.champion("torch_ranker")["version"] == 1
    card = registry.card("lgbm_ranker", 1)
    assert card["train_window"] == ["2026-11-01", "2026-11-02"] and card["eval_day"] == "2026-11-03"
    assert sorted(card["lake_versions"]) == ["2026-11-01", "2026-11-02", "2026-11-03"]
    # the torch champion is what the serving directory holds, trained through the last training event
    state = load_latest(tmp_path / "serving")
    assert state.seq == report.serving_seq and state.metadata["model"] == "torch_ranker"
    assert state.metadata["version"] == 1 and state.metadata["eval_day"] == "2026-11-03"
    assert state.metadata["trained_through_ms"] < 1_793_664_000_000  # before 2026-11-03 00:00 UTC
    assert [(n, v, p) for n, v, _, _, p in report.history] == [("lgbm_ranker", 1, True), ("torch_ranker", 1, True)]


def test_second_retrain_meets_the_champion_on_the_same_day(tmp_path, three_days) -> None:
    first = retrain_and_promote(three_days / "lake", tmp_path / "models", tmp_path / "serving", SETTINGS)
    # A margin no challenger can meet: the champions stay, nothing new is published.
    strict = BatchSettings(**{**SETTINGS.__dict__, "promotion_margin_auc": -1.0})
    second = retrain_and_promote(three_days / "lake", tmp_path / "models", tmp_path / "serving", strict)
    for name, m in second.models.items():
        assert m.version == 2 and m.promoted is False
        assert m.champion_auc is not None
    # same data and seeds give the same LightGBM: the champion scores what the challenger scores
    assert second.models["lgbm_ranker"].champion_auc == pytest.approx(first.models["lgbm_ranker"].metrics["auc"])
    assert second.serving_seq is None
    assert [(n, v, p) for n, v, _, _, p in second.history] == [
        ("lgbm_ranker", 1, True), ("lgbm_ranker", 2, False), ("torch_ranker", 1, True), ("torch_ranker", 2, False)]


def test_a_champion_that_cannot_be_loaded_is_no_comparison(tmp_path, three_days, caplog) -> None:
    from tiktok_pipelines.training.registry import ModelRegistry
    from tiktok_pipelines.training.torch_ranker import META_FILE

    retrain_and_promote(three_days / "lake", tmp_path / "models", tmp_path / "serving", SETTINGS)
    meta = ModelRegistry(tmp_path / "models").path("torch_ranker", 1) / META_FILE
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": 1}))  # an older release's model
    with caplog.at_level(logging.WARNING, logger="tiktok_pipelines.training.batch"):
        report = retrain_and_promote(three_days / "lake", tmp_path / "models", tmp_path / "serving", SETTINGS)
    torch = report.models["torch_ranker"]
    assert torch.champion_auc is None and torch.promoted is True and report.serving_seq is not None
    assert "champion v1 cannot be loaded" in caplog.text
    assert report.models["lgbm_ranker"].champion_auc is not None


def test_one_day_of_examples_is_skipped(tmp_path) -> None:
    from tests.ingest.conftest import dumps, write_landing
    from tests.training.test_joiner import SCENARIO
    from tiktok_pipelines.ingest.engine import ingest_files
    from tiktok_pipelines.ingest.landing import list_landing_files
    from tiktok_pipelines.training.joiner import JoinerConfig, build_examples

    for stream, rows in SCENARIO.items():
        write_landing(tmp_path / "landing", stream, [dumps(r) for r in rows])
    ingest_files(list_landing_files(tmp_path / "landing"), landing_root=tmp_path / "landing",
                 lake_root=tmp_path / "lake")
    build_examples(tmp_path / "lake", JoinerConfig(negative_rate=1.0))
    report = retrain_and_promote(tmp_path / "lake", tmp_path / "models", tmp_path / "serving", SETTINGS)
    assert report.skipped == "batch retraining needs two days of examples, found 1"
    assert report.models == {} and not (tmp_path / "models").exists() and not (tmp_path / "serving").exists()
