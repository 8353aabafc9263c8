"""Two writers on one serving directory: what the daemon does when it launches runs concurrently.

An online update reads the newest version, trains from it and publishes the next. Without the
serving directory's writer lock, updates started together all train the same window from the
same version: the impressions are trained several times and the chain's later deltas are built
on a version their rows are not relative to.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.training.batch_model import publish_batch_model
from tiktok_pipelines.ingest.engine import ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.serving.store import ServingPublisher, list_versions, load_latest, read_version_manifest
from tiktok_pipelines.simulator import simulate
from tiktok_pipelines.training.joiner import JoinerConfig
from tiktok_pipelines.training.online import online_update, ranker_from_state
from tiktok_pipelines.training.stream_join import committed_watermark_ms, stream_examples_after

CONFIG = JoinerConfig(negative_rate=0.5)


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, int]:
    """Day 1 ingested and published as the batch model (seq 1); day 2 ingested, not yet trained."""
    simulate(tmp_path, seed=9, users=300, videos=600, days=2, events_per_day=15_000, start_date="2026-11-01",
             kuairec_dir=None, write_truth=False)
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    files = list_landing_files(landing)
    ingest_files([f for f in files if "/dt=2026-11-01/" in f.rel_path], landing_root=landing, lake_root=lake)
    _, through = publish_batch_model(lake, tmp_path / "serving", CONFIG)
    ingest_files([f for f in files if "/dt=2026-11-02/" in f.rel_path], landing_root=landing, lake_root=lake)
    return tmp_path, through


def test_updates_started_together_train_each_impression_once(world) -> None:
    data, first_through = world
    lake, serving = data / "lake", data / "serving"
    start = threading.Barrier(3)
    reports, errors = [], []

    def update() -> None:
        start.wait()
        try:
            reports.append(online_update(lake, serving, CONFIG, batch_size=256))
        except Exception as e:  # collected: an exception in a thread would not fail the test
            errors.append(e)

    threads = [threading.Thread(target=update) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    published = [r for r in reports if r.published_seq is not None]
    # The first to get the lock trains everything whose label window has closed; the others find
    # nothing left and publish nothing.
    assert len(reports) == 3 and len(published) == 1, reports
    assert all(r.reason.startswith("no impression has a closed label window") for r in reports if r not in published)
    assert list_versions(serving) == [1, 2]
    until = committed_watermark_ms(lake) - CONFIG.label_window_s * 1000 - 1
    manifest = read_version_manifest(serving, 2)
    assert manifest["kind"] == "delta" and manifest["base_seq"] == 1
    assert manifest["metadata"]["trained_through_ms"] == until
    emitted = stream_examples_after(lake, first_through)
    assert manifest["metadata"]["online_examples"] == published[0].examples == emitted.num_rows > 0
    assert emitted.num_rows == len(set(emitted.column("example_id").to_pylist()))  # each once
    assert load_latest(serving).seq == 2
    assert not [p for p in serving.iterdir() if p.name.startswith((".tmp-", ".trash-"))]


def test_a_delta_on_top_of_a_version_published_meanwhile_is_refused(world) -> None:
    """A writer that did not hold the lock (two publishers resumed from the same version): the
    second delta would read as a valid chain and be wrong, so it is refused and nothing is written."""
    data, _ = world
    serving = data / "serving"
    state = load_latest(serving)
    a, b = ranker_from_state(state), ranker_from_state(load_latest(serving))
    pa_, pb = ServingPublisher(serving), ServingPublisher(serving)
    pa_.resume_from(state.seq)
    pb.resume_from(state.seq)
    pa_.publish(a.embeddings.tables, now_s=1, metadata=state.metadata)
    with pytest.raises(RuntimeError, match="was published after"):
        pb.publish(b.embeddings.tables, now_s=1, metadata=state.metadata)
    assert list_versions(serving) == [1, 2]
    assert not [p for p in serving.iterdir() if p.name.startswith(".tmp-")]
    # A full version needs no base: that one still goes through.
    assert pb.publish(b.embeddings.tables, now_s=1, dense=b.dense_state(), full=True)["seq"] == 3
