"""The serving stack's online counters: recounted by brute force, and written by the streaming
joiner after each step from the day of events its state keeps."""

from __future__ import annotations

import random

import pyarrow as pa

from tiktok_pipelines.features.online import (
    DAY_MS,
    OnlineCounters,
    compute_counters,
    counters_path,
    write_counters,
)
from tiktok_pipelines.simulator.observed import ENGAGED_WATCH_RATIO, PRIOR_CTR, PRIOR_PLAYS, TRENDING_WINDOW_MS

AS_OF = 1_793_600_000_000 + 13 * 3_600_000  # 13:00 UTC


def _events(seed: int):
    r = random.Random(seed)
    views = [{"ts_ms": AS_OF - r.randint(-600_000, 2 * DAY_MS), "user_id": r.randint(1, 6), "video_id": r.randint(1, 8),
              "request_id": None, "watch_time_ms": r.randint(0, 20_000), "video_duration_ms": 10_000}
             for _ in range(400)]
    inter = [{"ts_ms": AS_OF - r.randint(-600_000, 2 * DAY_MS), "user_id": r.randint(1, 6), "video_id": r.randint(1, 8),
              "creator_id": r.randint(1, 3), "event_type": r.choice(["like", "follow", "share"]), "request_id": None}
             for _ in range(300)]
    return views, inter


def test_counters_match_a_brute_force_count(tmp_path):
    views, inter = _events(1)
    table = compute_counters(pa.Table.from_pylist(views), pa.Table.from_pylist(inter), AS_OF)
    write_counters(tmp_path, table, AS_OF)
    c = OnlineCounters.read(counters_path(tmp_path))
    assert c.as_of_ms == AS_OF
    day0 = AS_OF - AS_OF % DAY_MS
    last_day = [v for v in views if AS_OF - DAY_MS < v["ts_ms"] <= AS_OF]
    today = [v for v in views if day0 <= v["ts_ms"] <= AS_OF]
    for user in range(1, 7):
        assert c.get("user", "views_24h", user) == sum(v["user_id"] == user for v in last_day)
        assert c.get("user", "engagements_24h", user) == sum(
            x["user_id"] == user and AS_OF - DAY_MS < x["ts_ms"] <= AS_OF for x in inter)
    for video in range(1, 9):
        mine = [v for v in today if v["video_id"] == video]
        engaged = sum(v["watch_time_ms"] >= ENGAGED_WATCH_RATIO * v["video_duration_ms"] for v in mine)
        assert c.get("video", "views_24h", video) == sum(v["video_id"] == video for v in last_day)
        assert c.video_ctr(video) == (engaged + PRIOR_CTR * PRIOR_PLAYS) / (len(mine) + PRIOR_PLAYS)
        assert c.get("video", "plays_last_hour", video) == sum(v["ts_ms"] > AS_OF - TRENDING_WINDOW_MS for v in mine)
    for creator in range(1, 4):
        assert c.get("creator", "follows_today", creator) == sum(
            x["creator_id"] == creator and x["event_type"] == "follow" and day0 <= x["ts_ms"] <= AS_OF for x in inter)
    assert c.get("video", "views_24h", 999) == 0  # unknown ids count nothing


def test_no_file_reads_as_empty_counters(tmp_path):
    c = OnlineCounters.read(counters_path(tmp_path))
    assert c.as_of_ms is None and c.get("user", "views_24h", 1) == 0 and c.video_ctr(1) == PRIOR_CTR
