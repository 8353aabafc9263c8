"""The online update with its serving root in a bucket (moto's S3 server): the real caller
(``training/online.py``) reads the newest state from the bucket, trains, and publishes the next
version there; updates started together on one host take turns (``writer_lock`` on the URI)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.s3 import new_bucket
from tests.training.batch_model import publish_batch_model
from tiktok_pipelines.ingest.engine import ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.serving.store import list_versions, load_latest, read_version_manifest
from tiktok_pipelines.simulator import simulate
from tiktok_pipelines.training.joiner import JoinerConfig
from tiktok_pipelines.training.online import online_update

CONFIG = JoinerConfig(negative_rate=0.5)


@pytest.fixture
def world(tmp_path: Path, s3_endpoint, s3_env, monkeypatch) -> tuple[Path, str]:
    """Day 1 ingested and its batch model published to ``s3://<bucket>/serving`` (seq 1); day 2
    ingested, not yet trained."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("TIKTOK_SERVING_CACHE", str(tmp_path / "cache"))
    serving = f"s3://{new_bucket(s3_endpoint)}/serving"
    simulate(tmp_path, seed=9, users=300, videos=600, days=2, events_per_day=15_000, start_date="2026-11-01",
             kuairec_dir=None, write_truth=False)
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    files = list_landing_files(landing)
    ingest_files([f for f in files if "/dt=2026-11-01/" in f.rel_path], landing_root=landing, lake_root=lake)
    publish_batch_model(lake, serving, CONFIG)
    ingest_files([f for f in files if "/dt=2026-11-02/" in f.rel_path], landing_root=landing, lake_root=lake)
    return tmp_path, serving


def test_online_updates_started_together_publish_one_delta_to_the_bucket(world) -> None:
    data, serving = world
    assert list_versions(serving) == [1]
    start = threading.Barrier(3)
    reports, errors = [], []

    def update() -> None:
        start.wait()
        try:
            # the trainer's checkpoint is local state, beside the data (never in the bucket)
            reports.append(online_update(data / "lake", serving, CONFIG, batch_size=256,
                                         checkpoint_root=data / "serving_trainer"))
        except Exception as e:  # collected: an exception in a thread would not fail the test
            errors.append(e)

    threads = [threading.Thread(target=update) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    published = [r for r in reports if r.published_seq is not None]
    assert len(reports) == 3 and len(published) == 1, reports
    assert list_versions(serving) == [1, 2]
    manifest = read_version_manifest(serving, 2)
    assert manifest["kind"] == "delta" and manifest["base_seq"] == 1
    assert manifest["metadata"]["online_examples"] == published[0].examples > 0
    state = load_latest(serving)
    assert state.seq == 2 and not state.skipped
    assert state.metadata["trained_through_ms"] == published[0].trained_through_ms
