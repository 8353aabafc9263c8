"""The daily retrain in small, for tests of what comes after it (online updates, their faults)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tiktok_pipelines.serving.store import ServingPublisher
from tiktok_pipelines.training.joiner import JoinerConfig, build_examples, read_examples
from tiktok_pipelines.training.stream_join import stream_examples_after
from tiktok_pipelines.training.torch_ranker import MonolithRanker


def publish_batch_model(lake: Path, serving: Path, config: JoinerConfig, *,
                        admit_min_count: int | None = 2) -> tuple[MonolithRanker, int]:
    """Join every impression in the lake, train the torch ranker on all of them and publish it
    as a full version, as ``batch_rankers`` does (with its count filter: ids get rows at their
    second occurrence); returns the model and ``trained_through_ms`` (the online updates
    continue from there)."""
    build_examples(lake, config)
    examples = read_examples(lake).drop_columns(["event_date"])  # ORDER BY ts_ms
    model = MonolithRanker(dim=8, admit_min_count=admit_min_count)
    model.fit(examples)
    through = int(examples.column("ts_ms")[examples.num_rows - 1].as_py())
    ServingPublisher(serving).publish(model.embeddings.tables, now_s=through // 1000, dense=model.dense_state(),
                                      full=True, metadata={"trained_through_ms": through})
    return model, through


def streamed(lake: Path, after_ms: int, until_ms: int) -> pa.Table:
    """What the streaming joiner emitted for impressions in (after_ms, until_ms]: what online
    updates trained on between two versions with those ``trained_through_ms``."""
    t = stream_examples_after(lake, after_ms)
    return t.filter(pc.less_equal(t.column("ts_ms"), until_ms))


def day_one_published(root: Path, config: JoinerConfig, *, seed: int, users: int, videos: int,
                      events_per_day: int, lake: str | None = None) -> tuple[Path, Path | str, Path, list, int]:
    """Two simulated days without late deliveries (an impression's labels are final once its
    window closed); day 1 ingested and its batch model published as the first full version.
    Returns (landing, lake, serving, every landing file, trained_through_ms); day 2 is left for
    the online updates under test. ``lake``: where the lake lives (default ``root/lake``; an
    ``s3://`` URI puts it in a bucket)."""
    from tiktok_pipelines.ingest.engine import ingest_files
    from tiktok_pipelines.ingest.landing import list_landing_files
    from tiktok_pipelines.simulator import simulate

    simulate(root, seed=seed, users=users, videos=videos, days=2, events_per_day=events_per_day,
             start_date="2026-11-01", kuairec_dir=None, write_truth=False, late_rate=0.0)
    landing, serving = root / "landing", root / "serving"
    lake = lake or root / "lake"
    files = list_landing_files(landing)
    ingest_files([f for f in files if "/dt=2026-11-01/" in f.rel_path], landing_root=landing, lake_root=lake)
    _, through = publish_batch_model(lake, serving, config)
    return landing, lake, serving, files, through
