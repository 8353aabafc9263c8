"""The DeepFM torch ranker: what it learns, how it is trained, saved and refused."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from tiktok_pipelines.experiments.movielens import read_movielens, time_split
from tiktok_pipelines.experiments.movielens_synth import write_movielens_like
from tiktok_pipelines.training.evaluate import corrected
from tiktok_pipelines.training.torch_ranker import META_FILE, IncompatibleModel, MonolithRanker


@pytest.fixture(scope="module")
def ratings(tmp_path_factory):
    d = write_movielens_like(tmp_path_factory.mktemp("ml") / "ml", users=150, items=200, ratings=6_000, seed=5)
    _, ex = read_movielens(d)
    train, evaluation, _ = time_split(ex, 0.8)
    return train, evaluation


def test_item_biases_rank_items_for_users_never_seen(ratings) -> None:
    """The former two-tower model had no per-id bias: for a user without a row every item scored
    alike. Here an item's first-order term ranks it for anyone: unseen users get the items that
    were liked more often ranked higher."""
    train, _ = ratings
    model = MonolithRanker(dim=4, seed=0)
    model.fit(train, epochs=3)
    items = train.column("video_id").to_numpy()
    liked = train.column("engaged").to_numpy(zero_copy_only=False)
    seen = np.bincount(items)
    rate = np.bincount(items, weights=liked) / np.maximum(seen, 1)
    frequent = np.flatnonzero(seen >= 30)
    best, worst = frequent[np.argmax(rate[frequent])], frequent[np.argmin(rate[frequent])]
    probe = train.slice(0, 2).set_column(train.schema.get_field_index("user_id"), "user_id",
                                         pa.array([10**9, 10**9], pa.int64()))
    probe = probe.set_column(probe.schema.get_field_index("video_id"), "video_id",
                             pa.array([int(best), int(worst)], pa.int64()))
    p = model.predict(probe)
    assert p[0] > p[1] + 0.05, (rate[best], rate[worst], p)
    b = model.embeddings.tables["video_id_bias"].embeddings_for(np.array([best, worst]))[:, 0]
    assert b[0] > b[1]


def test_early_stopping_picks_epochs_on_a_later_slice_and_refits_the_whole_window(ratings) -> None:
    train, evaluation = ratings
    chosen = MonolithRanker(dim=4, seed=1, max_epochs=6)
    report = chosen.fit(train)
    assert 1 <= report.epochs <= len(report.validation_log_loss) <= 6
    assert report.epochs == int(np.argmin(report.validation_log_loss)) + 1
    assert report.fit_examples + report.validation_examples == train.num_rows
    # The final model is trained on the whole window for the chosen epochs: the same model as a
    # fit for that many epochs from the same seed (what the online arms of an experiment start from).
    again = MonolithRanker(dim=4, seed=1)
    again.fit(train, epochs=report.epochs)
    np.testing.assert_array_equal(chosen.predict(evaluation), again.predict(evaluation))


def test_save_load_round_trip_and_served_probability(tmp_path, ratings) -> None:
    train, evaluation = ratings
    model = MonolithRanker(dim=4, seed=2)
    model.fit(train, epochs=1)
    model.save(tmp_path, now_s=1)
    loaded = MonolithRanker.load(tmp_path)
    np.testing.assert_allclose(loaded.predict(evaluation), model.predict(evaluation), rtol=0, atol=1e-6)
    p = model.predict(evaluation)
    np.testing.assert_allclose(model.predict_served(evaluation, 0.25), corrected(p, 0.25))
    assert np.all(model.predict_served(evaluation, 0.25) < p)  # negatives were kept at 1/4: p was inflated


def test_a_model_of_the_former_format_is_refused_not_misread(tmp_path, ratings) -> None:
    train, _ = ratings
    model = MonolithRanker(dim=4, seed=0)
    model.fit(train.slice(0, 500), epochs=1)
    model.save(tmp_path, now_s=1)
    meta = json.loads((tmp_path / META_FILE).read_text())
    del meta["format"]  # as the two-tower ranker wrote it
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(IncompatibleModel):
        MonolithRanker.load(tmp_path)
    with pytest.raises(IncompatibleModel):
        MonolithRanker.shape_of({"head.0.weight": np.zeros((32, 11)), "dense_mean": np.zeros(11)})
