"""Experiment (d): the closed loop. Simulated users react to what the model served.

Monolith's argument for online training is that the world moves: interests drift and trends come
and go, so a model synced often serves better than one frozen at the last batch retrain. Replays
of logged data (experiment (a)) can only score a model on what some *other* policy served; here the
model itself chooses what users see, and users react to it.

Setup, shared by every arm: a world's first ``warmup_days`` are simulated with the simulator's own
feed, ingested, labelled by the joiner, and the DeepFM ranker is trained on them and published to
a serving directory as a full version (as the daily batch retrain does).

Then each arm copies that state and lives ``loop_days`` more days of the same world. Every day the
For-You "personal" slots are filled from the arm's serving directory by the model server's own
ranking code (``ModelServer.rank_full``: what ``/recommend`` answers without a LightGBM champion,
two-tower retrieval then the full ranker on the features the server knows, its online counters as
of the day's start), the day is ingested and joined,
and the engagement of those served slots is measured with the joiner's labels (weighted by
1/sample_rate, so downsampled negatives count fully). The arms differ only in what was served: the
simulator draws the same sessions, timings and reaction noise in all of them.

- ``batch_only``: the warm-up model, never updated.
- ``online``: after each day, the online update (``training.online.online_update``, what the
  sensor-driven job runs) trains on the day's closed-label impressions and publishes a delta; the
  server hot-reloads it before the next day. Daily sync, the slowest of (a)'s intervals: the
  simulator serves a whole day from one model state.
- ``simulator_policy``: the simulator's own feed, which samples each user's *true* current
  interests: an informed reference, not a model.
- ``random``: uniformly random videos: the floor.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np

from tiktok_pipelines.features.online import counters_path
from tiktok_pipelines.ingest.engine import ingest_files
from tiktok_pipelines.ingest.landing import list_landing_files
from tiktok_pipelines.layout import DataLayout
from tiktok_pipelines.serving.server import ModelServer
from tiktok_pipelines.serving.store import ServingPublisher
from tiktok_pipelines.simulator import simulate
from tiktok_pipelines.sqlfiles import load_sql
from tiktok_pipelines.training.joiner import JoinerConfig, build_examples, examples_source, read_examples
from tiktok_pipelines.training.online import online_update
from tiktok_pipelines.training.stream_join import run_stream_join
from tiktok_pipelines.training.torch_ranker import MonolithRanker

ARMS = ("random", "simulator_policy", "batch_only", "online")


def _ingest_and_join(data: Path, config: JoinerConfig) -> None:
    landing, lake = DataLayout(data).landing, DataLayout(data).lake
    ingest_files(list_landing_files(landing), landing_root=landing, lake_root=lake)
    build_examples(lake, config)
    # The streaming joiner runs in every arm, as it does in production whatever the training:
    # it writes the online counters the server ranks with (the online arm's updates train on
    # its examples too).
    run_stream_join(lake, config)


def _examples(lake: Path, where: str = "true"):
    return read_examples(lake, where=where, order_by="ts_ms")  # the table's committed snapshot


def served_engagement(lake: Path, date: str) -> dict:
    """Engagement of the For-You personal slots on ``date``, from the joiner's labels."""
    con = duckdb.connect()
    source = examples_source(con, lake, days=[date])
    if source is None:
        return {"date": date, "impressions": 0, "engaged_rate": None, "play_rate": None, "mean_watch_ratio": None}
    row = con.sql(load_sql(__package__, "served_engagement", source=source)).fetchall()[0]
    con.close()
    return {"date": date, "impressions": round(row[0] or 0), "engaged_rate": row[1],
            "play_rate": row[2], "mean_watch_ratio": row[3]}


def closed_loop(work: str | Path, *, seed: int = 7, users: int = 3000, videos: int = 6000,
                warmup_days: int = 3, loop_days: int = 3, events_per_day: int = 60_000,
                kuairec_dir: str | Path | None = None, dim: int = 16, k: int = 50,
                negative_rate: float = 0.5, arms: tuple[str, ...] = ARMS) -> dict:
    work = Path(work)
    config = JoinerConfig(negative_rate=negative_rate)
    world = {"seed": seed, "users": users, "videos": videos, "events_per_day": events_per_day,
             "kuairec_dir": kuairec_dir, "late_rate": 0.0}
    base = work / "warmup"
    if base.exists():
        shutil.rmtree(base)
    simulate(base, days=warmup_days, **world)
    _ingest_and_join(base, config)
    train = _examples(DataLayout(base).lake)
    model = MonolithRanker(dim=dim, seed=seed)
    model.fit(train)
    last_ms = int(train.column("ts_ms")[train.num_rows - 1].as_py())
    ServingPublisher(DataLayout(base).serving).publish(
        model.embeddings.tables, now_s=last_ms // 1000, dense=model.dense_state(), full=True,
        metadata={"model": "torch_ranker", "trained_through_ms": last_ms, "experiment": "closed_loop"})

    out: dict = {"warmup_days": warmup_days, "loop_days": loop_days, "train_examples": train.num_rows,
                 "users": users, "videos": videos, "events_per_day": events_per_day, "k": k, "arms": {}}
    for arm in arms:
        d = work / arm
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(base, d)
        dl = DataLayout(d)
        server = None
        if arm in ("batch_only", "online"):
            server = ModelServer(dl.serving, catalog_dir=dl.catalog, counters_path=counters_path(dl.lake))

            def recommender(user_ids: np.ndarray, day: int, server=server) -> np.ndarray:
                # what /recommend answers: retrieval, then the full ranker on the features the
                # server knows (counters as of the newest event it has seen: the day's start)
                server.reload_counters()
                return server.rank_full(user_ids, k, now_ms=server.counters.as_of_ms)[0]
        elif arm == "random":
            def recommender(user_ids: np.ndarray, day: int) -> np.ndarray:
                r = np.random.default_rng([seed, day, 99])
                return r.integers(1, videos + 1, (len(user_ids), k))
        elif arm == "simulator_policy":
            recommender = None
        else:
            raise ValueError(f"unknown arm {arm!r}; known: {ARMS}")
        days = []
        for i in range(loop_days):
            summary = simulate(d, first_day=warmup_days + i, days=1, recommender=recommender, **world)
            _ingest_and_join(d, config)
            day = served_engagement(dl.lake, summary.start_date)
            if arm == "online":
                report = online_update(dl.lake, dl.serving, config)
                server.reload()
                day["online_examples"] = report.examples
                day["serving_seq"] = server.state.seq
            days.append(day)
        out["arms"][arm] = {
            "days": days,
            "engaged_rate": float(np.average([x["engaged_rate"] for x in days],
                                             weights=[x["impressions"] for x in days])),
        }
    return out
