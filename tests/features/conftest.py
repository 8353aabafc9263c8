"""A tiny hand-written lake, in the ingest engine's layout, for exact feature values.

Rows are committed straight to the events tables (``lake/events/<stream>``, Delta, partition
``event_date=D``, typed as the event contract says) rather than through landing files: the ingest
engine would quarantine events weeks older than their flush time, and these tests need history
that spans 40 days. The lake may be a local folder or ``s3://bucket/prefix`` (the ``lake_root``
fixture).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tiktok_pipelines.dims import publish_dim
from tiktok_pipelines.features import as_of_ms
from tiktok_pipelines.ingest.engine import Lake, events_schema, events_table
from tiktok_pipelines.tables import StagedFile

DAY = "2026-11-10"  # the feature date of most tests
T = as_of_ms(DAY)  # its cutoff: 2026-11-10 00:00 UTC
H = 3_600_000
D = 24 * H

def write_events(lake: Path | str, stream: str, rows: list[dict], name: str, day: str | None = None) -> str:
    """One Parquet file per call, committed to the stream's events table as one transaction.
    ``day`` (the partition) defaults to the UTC date of the first row's ts_ms; passing another one
    misplaces the rows on purpose. Returns where the file lies (a local path or an s3:// URI)."""
    day = day or dt.datetime.fromtimestamp(rows[0]["ts_ms"] / 1000, dt.timezone.utc).date().isoformat()
    schema = events_schema(stream)
    file_schema = pa.schema([f for f in schema if f.name != "event_date"])  # the partition is the folder
    table = pa.Table.from_pylist([{f: r.get(f) for f in file_schema.names} for r in rows], schema=file_schema)
    store = Lake(str(lake)).store
    staging = Path(lake) / "_staging" if store.is_local else Path(tempfile.gettempdir()) / f"tests-staging-{os.getpid()}"
    staged = staging / "tests" / stream / day / f"part-{name}.parquet"
    staged.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, staged)
    store.commit_files(events_table(stream), [StagedFile(staged, staged.name, table.num_rows, {"event_date": day})],
                       schema=schema, txn=f"tests:{stream}:{day}:{name}", partition_by=["event_date"])
    return f"{store.uri(events_table(stream))}/event_date={day}/{staged.name}"


_n = iter(range(10**9))


def view(ts: int, user: int, video: int, creator: int, watch: int, duration: int) -> dict:
    return {"event_id": f"v{next(_n)}", "ts_ms": ts, "user_id": user, "session_id": "s", "video_id": video,
            "creator_id": creator, "watch_time_ms": watch, "video_duration_ms": duration,
            "traffic_source": "foryou"}


def imp(ts: int, user: int, video: int, creator: int) -> dict:
    return {"event_id": f"i{next(_n)}", "ts_ms": ts, "user_id": user, "request_id": "r", "session_id": "s",
            "video_id": video, "creator_id": creator, "position": 0, "surface": "foryou",
            "candidate_source": "personal", "model_version": "m", "score": 0.5, "served_features": "{}"}


def act(ts: int, user: int, kind: str, creator: int, video: int | None = None) -> dict:
    return {"event_id": f"x{next(_n)}", "ts_ms": ts, "user_id": user, "event_type": kind, "video_id": video,
            "creator_id": creator}


def videos() -> pa.Table:
    """Catalog: 100/102 dance, 101 food (all by creator 7); 103 is absent from the catalog."""
    return pa.table({
        "video_id": pa.array([100, 101, 102, 200], pa.int64()),
        "creator_id": pa.array([7, 7, 7, 8], pa.int64()),
        "caption": ["a", "b", "c", "d"],
        "hashtags": pa.array([[], [], [], []], pa.list_(pa.string())),
        "category": ["dance", "food", "dance", None],
        "duration_ms": pa.array([20_000, 30_000, 50_000, 10_000], pa.int64()),
        "language": ["en"] * 4,
        "published_at_ms": pa.array([T - 10 * D, T - 2 * D, T - 30 * D, T - 9 * D], pa.int64()),
        "source": ["sim"] * 4,
        "source_video_id": pa.array([1, 2, 3, 4], pa.int64()),
    })


def write_videos(path: Path) -> None:
    """``videos()`` as a catalog export file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(videos(), path)


def publish_videos(lake: Path | str) -> int:
    """``videos()`` as the lake's ``dims/videos`` table (what dim_videos publishes); its version."""
    return publish_dim(Lake(str(lake)).store, "videos", videos())


def write_scenario(data_dir: Path, lake_root: Path | str | None = None) -> Path | str:
    """The lake every exact-value test reads (``<data_dir>/lake`` unless ``lake_root`` is given:
    a folder or s3://…); returns the lake root. The catalog export is ``<data_dir>/catalog``.
    Expected values are derived next to each assertion."""
    lake = lake_root if lake_root is not None else data_dir / "lake"
    write_videos(data_dir / "catalog" / "videos.parquet")
    # User 1: three plays yesterday at 08:10, 08:50 and 20:30 UTC.
    write_events(lake, "views", [
        view(T - D + 8 * H + 600_000, 1, 100, 7, 10_000, 20_000),   # ratio 0.5, dance
        view(T - D + 8 * H + 3_000_000, 1, 101, 7, 30_000, 30_000),  # ratio 1.0 (a finish), food
        view(T - D + 20 * H + 1_800_000, 1, 102, 7, 5_000, 50_000),  # ratio 0.1, dance
        # User 2: one play in each window: yesterday, 5 days ago, 21 days ago; and 40 days ago (outside).
        view(T - 2 * H, 2, 103, 9, 4_000, 8_000),
    ], "a")
    write_events(lake, "views", [view(T - 5 * D + H, 2, 103, 9, 8_000, 8_000)], "b")
    write_events(lake, "views", [view(T - 21 * D + H, 2, 103, 9, 2_000, 8_000)], "c")
    write_events(lake, "views", [view(T - 40 * D + H, 2, 103, 9, 8_000, 8_000)], "d")
    # Video 200 (creator 8): six plays at D-3 00:00 (the trending baseline) and one 6 hours ago.
    write_events(lake, "views", [view(T - 3 * D, 50 + i, 200, 8, 1_000, 10_000) for i in range(6)], "e")
    write_events(lake, "views", [view(T - 6 * H, 60, 200, 8, 10_000, 10_000)], "f")
    # Impressions yesterday: four for user 1 (videos 100, 100, 101, 102), two for user 2 (100, 103).
    write_events(lake, "impressions", [imp(T - D + 8 * H, 1, v, 7) for v in (100, 100, 101, 102)]
                 + [imp(T - 3 * H, 2, 100, 7), imp(T - 3 * H, 2, 103, 9)], "a")
    # Interactions: user 1 liked 101 and shared 100 yesterday; follows of creator 7.
    write_events(lake, "interactions", [
        act(T - D + 9 * H, 1, "like", 7, 101),
        act(T - D + 9 * H, 1, "share", 7, 100),
        act(T - D + 10 * H, 3, "follow", 7),       # new follower yesterday
        act(T - D + 11 * H, 1, "follow", 7),       # user 1 again: still one follower
    ], "a")
    write_events(lake, "interactions", [act(T - 9 * D, 1, "follow", 7)], "b")  # before the 7-day window
    write_events(lake, "interactions", [act(T - 2 * D, 2, "follow", 7)], "c")  # inside it
    return lake
