"""Online updates on a simulated world: catch up from the batch model, publish touched rows only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from tests.training.batch_model import day_one_published, publish_batch_model, streamed
from tiktok_pipelines.embedding.export import read_export
from tiktok_pipelines.ingest.engine import ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.serving.store import load_latest, read_version_manifest, version_dir
from tiktok_pipelines.simulator import simulate
from tiktok_pipelines.training.joiner import JoinerConfig, examples_between
from tiktok_pipelines.training.online import online_update

CONFIG = JoinerConfig(negative_rate=0.5)


def ingest_day(world: Path, day: str) -> None:
    landing = world / "landing"
    files = [f for f in list_landing_files(landing) if f"/dt={day}/" in f.rel_path]
    ingest_files(files, landing_root=landing, lake_root=world / "lake")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("online")
    simulate(w, seed=5, users=300, videos=600, days=3, events_per_day=30_000, start_date="2026-11-01",
             kuairec_dir=None, write_truth=False)
    return w


def test_online_updates_catch_up_and_publish_only_touched_rows(world: Path) -> None:
    lake, serving = world / "lake", world / "serving"
    assert online_update(lake, serving, CONFIG).reason.startswith("no model")
    ingest_day(world, "2026-11-01")
    # the batch model: trained on day 1, published as a full version
    model, through = publish_batch_model(lake, serving, CONFIG)
    assert online_update(lake, serving, CONFIG).published_seq is None  # nothing new has landed

    ingest_day(world, "2026-11-02")
    report = online_update(lake, serving, CONFIG, dense_every_s=36 * 3600)
    assert report.published_seq == 2 and report.base_seq == 1 and report.examples > 1000
    assert not report.dense_published  # the first delta since the full: dense waits for the cadence
    until = report.joined.counts.watermark_ms - CONFIG.label_window_s * 1000 - 1
    assert report.trained_through_ms == until  # every impression whose window closed
    trained = streamed(lake, through, until)
    assert trained.num_rows == report.examples
    # the batch join over the same window: the same impressions, but for what arrived late
    # (this world delivers some records a window late, as collectors do)
    batch = examples_between(lake, CONFIG, through, until)
    ids, batch_ids = set(trained.column("example_id").to_pylist()), set(batch.column("example_id").to_pylist())
    assert ids <= batch_ids and len(batch_ids - ids) <= report.joined.counts.late_impressions
    late = report.joined.counts.late_actions
    engaged = dict(zip(batch.column("example_id").to_pylist(), batch.column("engaged").to_pylist()))
    assert sum(engaged[i] != e for i, e in zip(trained.column("example_id").to_pylist(),
                                              trained.column("engaged").to_pylist())) <= late
    # the delta holds exactly the rows the training step touched: every id of the new examples
    # that holds a row (the count filter admits an id at its second occurrence)
    manifest = read_version_manifest(serving, 2)
    assert manifest["kind"] == "delta" and manifest["metadata"]["trained_through_ms"] >= until
    state = load_latest(serving)
    for slot in ("user_id", "video_id", "creator_id"):
        delta = read_export(version_dir(serving, 2) / manifest["tables"][slot])
        seen = np.unique(np.array(trained.column(slot).to_pylist(), dtype=np.int64))
        assert set(delta.ids.tolist()) == set(seen[state.tables[slot].lookup(seen) >= 0].tolist())
        assert len(delta.ids) > 0
        assert delta.accumulators is not None  # resumable in another process
        # the filter continued from the batch model's counts (it was not reset), in the delta's version
        before, after = model.embeddings.tables[slot].admission.counters, state.tables[slot].admission.counters
        assert (after >= before).all() and before.sum() > 0
    assert state.seq == 2 and len(state.tables["user_id"]) >= len(model.embeddings.tables["user_id"])

    ingest_day(world, "2026-11-03")
    second = online_update(lake, serving, CONFIG, dense_every_s=36 * 3600, full_every=2)
    assert second.base_seq == 2 and second.published_seq == 3 and second.dense_published
    # two versions since the full one: this update compacts the chain into a full version
    assert read_version_manifest(serving, 3)["kind"] == "full"
    # no impression is trained twice: the second window starts where the first ended
    again = streamed(lake, report.trained_through_ms, second.trained_through_ms)
    assert again.num_rows == second.examples
    assert pc.min(again.column("ts_ms")).as_py() > report.trained_through_ms
    assert not ids & set(again.column("example_id").to_pylist())
    assert sorted(ids | set(again.column("example_id").to_pylist())) == sorted(
        streamed(lake, through, second.trained_through_ms).column("example_id").to_pylist())
    state = load_latest(serving)
    assert state.seq == 3
    np.testing.assert_array_equal(state.dense["dense_mean"], model.mean)  # standardisation is kept


def test_online_updates_resume_the_trainer_exactly_as_one_process_would(tmp_path: Path) -> None:
    """N online updates over a stream leave the same parameters (rows, Adagrad state, dense
    weights, Adam state) as one process training on the same stream in the same batches. Before
    the trainer had a checkpoint of its own, each update restarted the dense weights from the
    last *published* ones with a fresh Adam, and this failed."""
    import torch

    from tiktok_pipelines.training.checkpoint import load_checkpoint
    from tiktok_pipelines.training.online import default_checkpoint_root, ranker_from_state

    landing, lake, serving, files, through = day_one_published(tmp_path, CONFIG, seed=8, users=200, videos=400,
                                                               events_per_day=15_000)
    one_process = ranker_from_state(load_latest(serving))  # the same start as the first update's

    flushes = sorted({f.flushed_at_ms for f in files if "/dt=2026-11-02/" in f.rel_path})
    windows, resumed = [], []
    for end in flushes[8:40:8]:  # four updates, two hours of flushes apart
        ingest_files([f for f in files if f.flushed_at_ms <= end], landing_root=landing, lake_root=lake)
        # dense weights are never published in between: all their learning lives in the checkpoint
        report = online_update(lake, serving, CONFIG, dense_every_s=10**9, batch_size=128)
        assert report.published_seq is not None and not report.dense_published, report
        windows.append((through, report.trained_through_ms))
        resumed.append(report.resumed_from)
        through = report.trained_through_ms
    assert resumed == ["serving", "checkpoint", "checkpoint", "checkpoint"]

    for start, end in windows:
        window = streamed(lake, start, end)
        # nothing arrives late in this world: the streaming join is the batch join, window by window
        assert sorted(window.to_pylist(), key=str) == sorted(examples_between(lake, CONFIG, start, end).to_pylist(),
                                                             key=str)
        one_process.partial_fit(window, batch_size=128)

    trainer, meta = load_checkpoint(default_checkpoint_root(serving), serving_seq=load_latest(serving).seq)
    assert meta["trained_through_ms"] == through
    for name, value in one_process.dense_state().items():
        np.testing.assert_array_equal(trainer.dense_state()[name], value, err_msg=name)
    a, b = one_process.optimizer.state_dict()["state"], trainer.optimizer.state_dict()["state"]
    assert a.keys() == b.keys() and a
    for index in a:
        for name in a[index]:
            assert torch.equal(a[index][name], b[index][name]), (index, name)
    for slot, table in one_process.embeddings.tables.items():
        ids = np.sort(table.row_state(table.live_rows())["id"])
        mine = trainer.embeddings.tables[slot]
        assert len(mine) == len(table)
        for field in ("embedding", "adagrad_accumulator", "count"):
            np.testing.assert_array_equal(mine.row_state(mine.lookup(ids))[field],
                                          table.row_state(table.lookup(ids))[field], err_msg=f"{slot}.{field}")
