"""What the simulated serving stack can know about a video when it serves it: counters of events
that happened before the impression (DESIGN.md decision 9). Latent truth (quality, trends,
interests) drives the users' reactions elsewhere in the simulator and never enters these.

The counters are the day's plays of each video (a counter store reset at midnight, as a daily
rolling window): for an impression of video v at time t, the plays of v that ended before t,
how many of them were engaged (watched to ``ENGAGED_WATCH_RATIO`` of the video's duration, read
off the play itself), and the plays of the last ``TRENDING_WINDOW_MS``. From them:

- ``video_ctr``: the engaged share of those plays, smoothed towards ``PRIOR_CTR`` with
  ``PRIOR_PLAYS`` pseudo-plays (a video nobody has played today is served the prior);
- ``trending_tag``: at least ``TRENDING_PLAYS`` plays in the last hour.

One vectorised pass: plays are sorted by (video, end time) as one int64 key, and each impression
finds its counts by binary search, so a day of millions of events costs a sort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ENGAGED_WATCH_RATIO = 0.5
PRIOR_CTR = 0.08
PRIOR_PLAYS = 20.0
TRENDING_WINDOW_MS = 3_600_000
TRENDING_PLAYS = 10
_TIME_BITS = 42  # epoch ms fit in 42 bits until the year 2109; video ids take the bits above


@dataclass(frozen=True)
class VideoCounters:
    plays_before: np.ndarray  # int64[n]
    engaged_before: np.ndarray  # int64[n]
    plays_last_window: np.ndarray  # int64[n]

    @property
    def ctr(self) -> np.ndarray:
        return (self.engaged_before + PRIOR_CTR * PRIOR_PLAYS) / (self.plays_before + PRIOR_PLAYS)

    @property
    def trending(self) -> np.ndarray:
        return self.plays_last_window >= TRENDING_PLAYS



def _key(video: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
    return (np.asarray(video, np.int64) << _TIME_BITS) | np.asarray(ts_ms, np.int64)


def video_counters(play_video: np.ndarray, play_end_ms: np.ndarray, play_engaged: np.ndarray,
                   video: np.ndarray, ts_ms: np.ndarray, window_ms: int = TRENDING_WINDOW_MS) -> VideoCounters:
    """Counts, per query (``video[i]`` at ``ts_ms[i]``), of the plays of that video that ended
    strictly before ``ts_ms[i]`` (all given plays, and those of the last ``window_ms``)."""
    keys = _key(play_video, play_end_ms)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    engaged = np.concatenate(([0], np.cumsum(np.asarray(play_engaged, np.int64)[order])))
    first = np.searchsorted(keys, _key(video, np.zeros_like(ts_ms)), side="left")
    before = np.searchsorted(keys, _key(video, ts_ms), side="left")
    recent = np.searchsorted(keys, _key(video, np.maximum(np.asarray(ts_ms) - window_ms, 0)), side="left")
    return VideoCounters(before - first, engaged[before] - engaged[first], before - recent)
