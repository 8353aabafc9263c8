"""Experiment (d), the closed loop: the simulator serves what a recommender picks, users react."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import polars as pl
import pytest

from tiktok_pipelines.experiments.closed_loop import closed_loop
from tiktok_pipelines.experiments.plots import plot_closed_loop
from tiktok_pipelines.lake import sql_path
from tiktok_pipelines.simulator import simulate

SMALL = dict(seed=5, users=300, videos=600, days=1, events_per_day=15_000, kuairec_dir=None,
             write_truth=False, late_rate=0.0, dirty_rate=0.0)


def _impressions(root):
    files = str(root / "landing" / "impressions" / "*" / "*.ndjson")
    return duckdb.sql(f"SELECT event_id, user_id, video_id, surface, candidate_source FROM "
                      f"read_json({sql_path(files)}, format='newline_delimited') ORDER BY event_id").pl()


def test_recommender_serves_the_personal_slots_and_nothing_else(tmp_path) -> None:
    simulate(tmp_path / "own", **SMALL)
    calls = []

    def recommender(user_ids: np.ndarray, day: int) -> np.ndarray:
        calls.append((user_ids.copy(), day))
        # each user's list: videos (user*7 + j) mod 600 + 1, so a slot's video names its rank j
        return (user_ids[:, None] * 7 + np.arange(20)[None, :]) % 600 + 1

    simulate(tmp_path / "served", recommender=recommender, **SMALL)
    own, served = _impressions(tmp_path / "own"), _impressions(tmp_path / "served")
    assert len(calls) == 1 and calls[0][1] == 0
    assert own.select("event_id", "user_id").equals(served.select("event_id", "user_id"))  # same sessions
    personal = (pl.col("surface") == "foryou") & (pl.col("candidate_source") == "personal")
    assert own.filter(~personal).equals(served.filter(~personal))  # every other slot untouched
    p = served.filter(personal)
    assert p.height > 100
    rank = (p["video_id"] - 1 - p["user_id"] * 7) % 600
    assert (rank < 20).all()  # every personal slot shows one of the user's recommendations
    assert set(p["user_id"].unique().to_list()) <= set(calls[0][0].tolist())
    assert (own.filter(personal)["video_id"] != p["video_id"]).mean() > 0.9


@pytest.mark.slow
def test_closed_loop_arms(tmp_path) -> None:
    r = closed_loop(tmp_path, users=400, videos=800, warmup_days=2, loop_days=2, events_per_day=20_000, dim=8, k=20)
    assert set(r["arms"]) == {"random", "simulator_policy", "batch_only", "online"}
    for arm in r["arms"].values():
        assert [d["date"] for d in arm["days"]] == ["2026-11-03", "2026-11-04"]
        assert all(d["impressions"] > 500 for d in arm["days"])
    e = {k: v["engaged_rate"] for k, v in r["arms"].items()}
    # a model trained on the users beats random picks, as does the simulator's informed policy
    # (which one of those two is ahead depends on the world: the policy is a reference, not a bound)
    assert e["random"] < min(e["batch_only"], e["simulator_policy"]), e
    # the online arm trained on each served day and the server swapped its deltas in
    online = r["arms"]["online"]["days"]
    assert all(d["online_examples"] > 0 for d in online)
    assert [d["serving_seq"] for d in online] == [2, 3]
    # the first served day is the same model in both arms: identical slots, identical engagement
    assert online[0]["engaged_rate"] == r["arms"]["batch_only"]["days"][0]["engaged_rate"]
    png = plot_closed_loop(json.loads(json.dumps(r)), tmp_path / "d.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
