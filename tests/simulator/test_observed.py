"""Served features come from observed data (DESIGN.md decision 9), never from latent truth."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tiktok_pipelines.simulator import simulate
from tiktok_pipelines.simulator.observed import (
    ENGAGED_WATCH_RATIO,
    PRIOR_CTR,
    PRIOR_PLAYS,
    TRENDING_PLAYS,
    TRENDING_WINDOW_MS,
    video_counters,
)


def test_counters_match_a_brute_force_count() -> None:
    r = np.random.default_rng(0)
    plays_v, plays_t = r.integers(0, 5, 400), r.integers(0, 10_000_000, 400)
    engaged = r.random(400) < 0.3
    v, t = r.integers(0, 6, 300), r.integers(0, 10_000_000, 300)
    c = video_counters(plays_v, plays_t, engaged, v, t, window_ms=1_000_000)
    for i in range(300):
        same = (plays_v == v[i]) & (plays_t < t[i])
        assert c.plays_before[i] == same.sum()
        assert c.engaged_before[i] == (same & engaged).sum()
        assert c.plays_last_window[i] == (same & (plays_t >= t[i] - 1_000_000)).sum()


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    out = tmp_path_factory.mktemp("observed")
    simulate(out, seed=4, users=400, videos=300, days=1, events_per_day=30_000, start_date="2026-11-01",
             kuairec_dir=None, dirty_rate=0.0, late_rate=0.0, write_truth=True)

    def read(stream: str) -> pl.DataFrame:
        return pl.concat([pl.read_ndjson(p) for p in sorted((out / "landing" / stream).rglob("*.ndjson"))],
                         how="diagonal_relaxed")

    return read("impressions"), read("views"), pl.read_parquet(Path(out) / "truth" / "videos.parquet"), out


def _landed(out: Path, stream: str) -> pl.DataFrame:
    return pl.concat([pl.read_ndjson(p) for p in sorted((out / "landing" / stream).rglob("*.ndjson"))],
                     how="diagonal_relaxed")


def test_served_followers_are_the_catalog_count_plus_the_follows_before(day) -> None:
    """creator_followers = the catalog's count (observed: the platform's creator table) plus the
    follow events of that day that landed before the impression; it used to grow with the day
    number from a latent value."""
    impressions, _, _, out = day
    catalog = dict(pl.read_parquet(out / "catalog" / "creators.parquet").select("creator_id", "followers").iter_rows())
    follows: dict[int, list[int]] = defaultdict(list)
    for creator, ts in _landed(out, "interactions").filter(pl.col("event_type") == "follow").select(
            "creator_id", "ts_ms").iter_rows():
        follows[creator].append(ts)
    grew = 0
    for creator, ts, served in impressions.select(
            "creator_id", "ts_ms", pl.col("served_features").struct.field("creator_followers")).iter_rows():
        counted = sum(t < ts for t in follows[creator])
        assert served == catalog[creator] + counted
        grew += counted > 0
    assert grew > 0  # some impressions saw follows of the day


def test_served_ctr_and_trending_are_recounted_from_the_plays_before_each_impression(day) -> None:
    """Every impression's video_ctr and trending_tag are what a counter of the day's plays (as
    they landed) gives at the impression's time: nothing else goes into them."""
    impressions, views, _, _ = day
    plays: dict[int, list[tuple[int, bool]]] = defaultdict(list)
    for vid, ts, watch, dur in views.select("video_id", "ts_ms", "watch_time_ms", "video_duration_ms").iter_rows():
        plays[vid].append((ts, watch >= ENGAGED_WATCH_RATIO * dur))
    served = impressions.select("video_id", "ts_ms", pl.col("served_features").struct.field("video_ctr"),
                                pl.col("served_features").struct.field("trending_tag"))
    trending_seen = 0
    for vid, ts, ctr, trending in served.iter_rows():
        before = [e for t, e in plays[vid] if t < ts]
        expected = (sum(before) + PRIOR_CTR * PRIOR_PLAYS) / (len(before) + PRIOR_PLAYS)
        assert ctr == pytest.approx(expected, abs=0.5e-4 + 1e-12), (vid, ts)  # served rounded to 4 places
        recent = sum(1 for t, _ in plays[vid] if ts - TRENDING_WINDOW_MS <= t < ts)
        assert trending == (recent >= TRENDING_PLAYS)
        trending_seen += trending
    assert served.height > 5_000 and 0 < trending_seen < served.height


def test_no_served_feature_follows_latent_quality_when_nothing_was_observed(day) -> None:
    """Impressions of videos nobody has played yet today are served the same prior, whatever the
    video's latent quality: the feature cannot be a function of it. (The former served CTR was
    sigmoid(0.8 * quality + trend + noise) and failed this.)"""
    impressions, views, truth, _ = day
    first_play = dict(views.group_by("video_id").agg(pl.col("ts_ms").min()).iter_rows())
    fresh = impressions.filter(pl.col("ts_ms") <= pl.col("video_id").replace_strict(
        first_play, default=2**62, return_dtype=pl.Int64))
    ctr = fresh["served_features"].struct.field("video_ctr")
    assert fresh.height > 50
    assert set(ctr.to_list()) == {round(PRIOR_CTR, 4)}
    quality = truth.filter(pl.col("video_id").is_in(fresh["video_id"].unique().implode()))
    assert quality.height > 10 and quality["quality"].std() > 0.1
