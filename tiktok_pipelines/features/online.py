"""Online counters: what the serving stack knows about users, videos and creators right now.

The streaming joiner (``training/stream_join.py``) keeps the last day of plays and interactions
in its state; after each committed step it writes these counters from them, as of the newest
event time it has seen, to ``<lake>/online_counters/counters.parquet`` (one file, replaced
atomically). The model server reads them to compute, at request time, the features the ranker
uses, and logs what it computed with each impression, so the joiner trains on what was served.

The definitions are the simulator's (``simulator/observed.py``: the serving stack the simulated
platform runs), so a model trained on simulated impressions sees the same features when served:

- user: ``views_24h`` (plays in the last 24 h), ``engagements_24h`` (likes, shares, comments,
  follows in the last 24 h);
- video: ``views_24h``; ``plays_today`` and ``engaged_today`` (plays since UTC midnight, and those
  watched to ``ENGAGED_WATCH_RATIO`` of the duration): ``video_ctr`` smoothed as the simulator
  serves it; ``plays_last_hour``: ``trending_tag`` at ``TRENDING_PLAYS``;
- creator: ``follows_today``, added to the catalog's follower count.

Long format (``entity, id, counter, value``) so that analysts can read it as a table; the time
the counters hold for is in the file's metadata (``as_of_ms``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from tiktok_pipelines.lake import atomic_replace
from tiktok_pipelines.simulator.observed import (
    ENGAGED_WATCH_RATIO,
    PRIOR_CTR,
    PRIOR_PLAYS,
    TRENDING_PLAYS,
    TRENDING_WINDOW_MS,
)

COUNTERS_DIR = "online_counters"
COUNTERS_FILE = "counters.parquet"
META_KEY = b"tiktok_pipelines.online_counters"
DAY_MS = 86_400_000
SCHEMA = pa.schema([("entity", pa.string()), ("id", pa.int64()), ("counter", pa.string()), ("value", pa.int64())])


def counters_path(lake_root: str | os.PathLike) -> Path:
    return Path(lake_root) / COUNTERS_DIR / COUNTERS_FILE


def compute_counters(views: pa.Table, interactions: pa.Table, as_of_ms: int) -> pa.Table:
    """The counters of plays and interactions with ``ts_ms <= as_of_ms``, in long format."""
    day0 = as_of_ms - as_of_ms % DAY_MS
    con = duckdb.connect()
    try:
        con.execute("SET threads = 1")
        con.register("v", views)
        con.register("x", interactions)
        return con.sql(f"""
            WITH vw AS (SELECT * FROM v WHERE ts_ms <= {as_of_ms} AND ts_ms > {as_of_ms - DAY_MS}),
                 xw AS (SELECT * FROM x WHERE ts_ms <= {as_of_ms} AND ts_ms > {as_of_ms - DAY_MS}),
                 today AS (SELECT * FROM v WHERE ts_ms <= {as_of_ms} AND ts_ms >= {day0})
            SELECT 'user' AS entity, user_id AS id, 'views_24h' AS counter, count(*) AS value FROM vw GROUP BY 1, 2
            UNION ALL SELECT 'user', user_id, 'engagements_24h', count(*) FROM xw GROUP BY 1, 2
            UNION ALL SELECT 'video', video_id, 'views_24h', count(*) FROM vw GROUP BY 1, 2
            UNION ALL SELECT 'video', video_id, 'plays_today', count(*) FROM today GROUP BY 1, 2
            UNION ALL SELECT 'video', video_id, 'engaged_today',
                             count(*) FILTER (WHERE watch_time_ms >= {ENGAGED_WATCH_RATIO!r} * video_duration_ms)
                      FROM today GROUP BY 1, 2
            UNION ALL SELECT 'video', video_id, 'plays_last_hour', count(*) FROM today
                      WHERE ts_ms > {as_of_ms - TRENDING_WINDOW_MS} GROUP BY 1, 2
            UNION ALL SELECT 'creator', creator_id, 'follows_today', count(*) FROM x
                      WHERE event_type = 'follow' AND ts_ms <= {as_of_ms} AND ts_ms >= {day0} GROUP BY 1, 2
            ORDER BY 1, 3, 2
        """).to_arrow_table().cast(SCHEMA)
    finally:
        con.close()


def write_counters(lake_root: str | os.PathLike, counters: pa.Table, as_of_ms: int) -> Path:
    path = counters_path(lake_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(counters.replace_schema_metadata({META_KEY: json.dumps({"as_of_ms": as_of_ms})}), tmp)
    atomic_replace(tmp, path)
    return path


@dataclass
class OnlineCounters:
    """The counters as the server holds them: one dict per (entity, counter). Missing = 0."""

    as_of_ms: int | None = None
    values: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | os.PathLike) -> OnlineCounters:
        path = Path(path)
        if not path.exists():
            return cls()
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
        values: dict[tuple[str, str], dict[int, int]] = {}
        for entity, id_, counter, value in zip(*(table.column(c).to_pylist() for c in SCHEMA.names)):
            values.setdefault((entity, counter), {})[id_] = value
        return cls(meta.get("as_of_ms"), values)

    def get(self, entity: str, counter: str, id_: int) -> int:
        return self.values.get((entity, counter), {}).get(int(id_), 0)

    def video_ctr(self, video_id: int) -> float:
        """The simulator's served definition: engaged share of today's plays, smoothed."""
        plays, engaged = self.get("video", "plays_today", video_id), self.get("video", "engaged_today", video_id)
        return (engaged + PRIOR_CTR * PRIOR_PLAYS) / (plays + PRIOR_PLAYS)

    def trending(self, video_id: int) -> bool:
        return self.get("video", "plays_last_hour", video_id) >= TRENDING_PLAYS
