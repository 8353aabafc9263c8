"""Admission filters keep their counts across restarts: in the trainer's checkpoint and in every
serving version, so neither an online update nor a trainer restarted from serving resets them."""

from __future__ import annotations

import numpy as np
import pytest

from tiktok_pipelines.embedding.admission import (
    CountFilter,
    ProbabilisticFilter,
    filter_from_state,
    filter_state,
)
from tiktok_pipelines.embedding.table import CollisionlessEmbeddingTable, TableConfig
from tiktok_pipelines.serving.store import ServingPublisher, load_latest


@pytest.mark.parametrize("make", [lambda: CountFilter(3, num_counters=4096, seed=7),
                                  lambda: ProbabilisticFilter(0.3, seed=5)])
def test_a_rebuilt_filter_continues_exactly(make):
    rng = np.random.default_rng(0)
    original = make()
    original.admit(rng.integers(0, 200, 500))
    rebuilt = filter_from_state(*filter_state(original))
    later = rng.integers(0, 300, 400)
    np.testing.assert_array_equal(original.admit(later), rebuilt.admit(later))
    if isinstance(original, CountFilter):
        np.testing.assert_array_equal(original.counters, rebuilt.counters)


def _table() -> CollisionlessEmbeddingTable:
    return CollisionlessEmbeddingTable(TableConfig(dim=2), name="user_id",
                                       admission=CountFilter(2, num_counters=4096))


def test_serving_versions_carry_the_counts(tmp_path):
    table = _table()
    rows = table.lookup_or_insert(np.array([1, 2, 2, 3]), now_s=100)
    assert (rows >= 0).tolist() == [False, True, True, False]  # 2 was seen twice: admitted
    publisher = ServingPublisher(tmp_path)
    publisher.publish({"user_id": table}, now_s=100, dense={"w": np.zeros(1)}, full=True)
    loaded = load_latest(tmp_path).tables["user_id"]
    np.testing.assert_array_equal(loaded.admission.counters, table.admission.counters)
    # a trainer restarted from this version admits 1 at its second sighting, not its third
    assert loaded.lookup_or_insert(np.array([1]), now_s=101)[0] >= 0
    # and a delta carries the counts as of the delta
    table.lookup_or_insert(np.array([3, 4]), now_s=102)
    publisher.publish({"user_id": table}, now_s=102)
    state = load_latest(tmp_path)
    assert state.seq == 2
    np.testing.assert_array_equal(state.tables["user_id"].admission.counters, table.admission.counters)
    assert state.tables["user_id"].lookup(np.array([3, 4])).tolist()[0] >= 0


def test_the_checkpoint_carries_the_counts(tmp_path):
    from tiktok_pipelines.training.checkpoint import load_checkpoint, save_checkpoint
    from tiktok_pipelines.training.torch_ranker import MonolithRanker

    model = MonolithRanker(dim=2, admit_min_count=3)
    ids = {slot: np.array([5, 5, 9]) for slot in model.embeddings.tables}
    for slot, table in model.embeddings.tables.items():
        table.lookup_or_insert(ids[slot], now_s=10)
    model.mean, model.std = np.zeros(1, np.float32), np.ones(1, np.float32)
    save_checkpoint(tmp_path, model, serving_seq=4, metadata={})
    resumed, _ = load_checkpoint(tmp_path, serving_seq=4)
    for slot, table in resumed.embeddings.tables.items():
        np.testing.assert_array_equal(table.admission.counters, model.embeddings.tables[slot].admission.counters)
        # 5 has been seen twice: its third sighting admits it, as in the process that saved it
        assert table.lookup_or_insert(np.array([5]), now_s=11)[0] >= 0
        assert table.lookup_or_insert(np.array([9]), now_s=11)[0] < 0
