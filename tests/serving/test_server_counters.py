"""The model server's online counters on either store: ``ModelServer(counters_lake=...)`` polls the
``online_counters`` Delta table's version beside the events (a local lake or one in a bucket), so
servers on any host follow the streaming joiner without a shared file system."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tests.serving.test_server import build_tables, write_catalog
from tiktok_pipelines.features.online import compute_counters, write_counters
from tiktok_pipelines.serving.server import ModelServer
from tiktok_pipelines.serving.store import ServingPublisher

NOW = 1_780_000_000_000


def _plays(video_id: int, n: int) -> tuple[pa.Table, pa.Table]:
    views = pa.table({"ts_ms": [NOW - 1000 * i for i in range(n)], "user_id": [1] * n, "video_id": [video_id] * n,
                      "request_id": [None] * n, "watch_time_ms": [15_000] * n, "video_duration_ms": [15_000] * n})
    inter = pa.table({"ts_ms": pa.array([], pa.int64()), "user_id": pa.array([], pa.int64()),
                      "video_id": pa.array([], pa.int64()), "creator_id": pa.array([], pa.int64()),
                      "event_type": pa.array([], pa.string()), "request_id": pa.array([], pa.string())})
    return views, inter


def test_the_server_follows_the_counters_on_either_store(tmp_path, lake_root) -> None:
    catalog, serving = tmp_path / "catalog", tmp_path / "serving"
    write_catalog(catalog)
    ServingPublisher(serving).publish(build_tables(), now_s=1, dense={"w": np.zeros(1)}, full=True)
    server = ModelServer(serving, catalog_dir=catalog, counters_lake=lake_root)
    assert server.counters.as_of_ms is None and not server.reload_counters()  # no table yet: nothing

    write_counters(lake_root, compute_counters(*_plays(13, 4), NOW), NOW, seq=1)
    assert server.reload_counters() and server.counters.as_of_ms == NOW
    assert server.counters.get("video", "views_24h", 13) == 4
    assert not server.reload_counters()  # the same version: not read again

    write_counters(lake_root, compute_counters(*_plays(13, 9), NOW + 1000), NOW + 1000, seq=2)
    assert server.reload_counters() and server.counters.get("video", "views_24h", 13) == 9
    assert server.reload_errors == 0
